import CLStoreSys
#if canImport(Glibc)
import Glibc
#endif

/// Extended attributes of the entry at `path` (not following a final symlink), sorted by name.
/// `display` names the entry in errors.
func readXattrs(path: [UInt8], display: @autoclosure () -> String) throws -> [Xattr] {
    try path.withCString { cPath -> [Xattr] in
        var listSize = 0
        var names = [CChar]()
        while true {
            listSize = try systemCall("listxattr", path: display()) { llistxattr(cPath, nil, 0) }
            if listSize == 0 { return [] }
            names = [CChar](repeating: 0, count: listSize)
            let got = llistxattr(cPath, &names, listSize)
            if got >= 0 { listSize = got; break }
            if errno != ERANGE { throw FileError(path: display(), operation: "listxattr", errno: errno) }
        }
        var result: [Xattr] = []
        var start = 0
        while start < listSize {
            var end = start
            while end < listSize && names[end] != 0 { end += 1 }
            let name = names[start..<end].map { UInt8(bitPattern: $0) }
            start = end + 1
            if name.isEmpty { continue }
            let value = try names.withUnsafeBufferPointer { buffer -> [UInt8]? in
                let cName = buffer.baseAddress! + (end - name.count)
                while true {
                    let size = lgetxattr(cPath, cName, nil, 0)
                    if size < 0 {
                        if errno == ENODATA { return nil }  // removed while we looked
                        throw FileError(path: display(), operation: "getxattr \(name.printable)", errno: errno)
                    }
                    var value = [UInt8](repeating: 0, count: size)
                    let got = value.withUnsafeMutableBytes { lgetxattr(cPath, cName, $0.baseAddress, size) }
                    if got >= 0 { return Array(value[0..<got]) }
                    if errno != ERANGE { throw FileError(path: display(), operation: "getxattr \(name.printable)", errno: errno) }
                }
            }
            if let value { result.append(Xattr(name: name, value: value)) }
        }
        return result.sorted { $0.name.lexicographicallyPrecedes($1.name) }
    }
}

/// Sets `xattrs` on the entry at `path`, not following a final symlink.
func writeXattrs(_ xattrs: [Xattr], path: [UInt8], display: @autoclosure () -> String) throws {
    guard !xattrs.isEmpty else { return }
    try path.withCString { cPath in
        for xattr in xattrs {
            try xattr.name.withCString { cName in
                try systemCall("setxattr \(xattr.name.printable)", path: display()) {
                    xattr.value.withUnsafeBytes { lsetxattr(cPath, cName, $0.baseAddress, $0.count, 0) }
                }
            }
        }
    }
}
