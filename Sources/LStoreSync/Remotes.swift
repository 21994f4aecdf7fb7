import LStoreStore
import LStoreTree
#if canImport(Glibc)
import Glibc
#endif

/// A named peer, kept in the store's `remotes` file (spec/protocol.md, "Remotes").
public struct Remote: Equatable, Sendable {
    public var name: String
    public var url: String
    /// A file holding the token to present, when the peer asks for one.
    public var tokenFile: String?

    public init(name: String, url: String, tokenFile: String?) {
        self.name = name
        self.url = url
        self.tokenFile = tokenFile
    }
}

/// The remotes of the store at `storePath`: `STORE/remotes`, one per line, `NAME\tURL\tTOKEN-FILE\n`
/// (the last field may be empty), sorted by name.
public struct Remotes {
    public let storePath: String

    public init(storePath: String) {
        self.storePath = storePath
    }

    private var path: String { storePath + "/remotes" }

    public func list() throws -> [Remote] {
        guard access(path, F_OK) == 0 else { return [] }
        let text = String(decoding: try readSmallFile(path, limit: 1 << 20), as: UTF8.self)
        return try text.split(separator: "\n").map { line in
            let fields = line.split(separator: "\t", omittingEmptySubsequences: false)
            guard fields.count == 3 else { throw StoreError.corrupt("\(path): bad line '\(line.prefix(80))'") }
            return Remote(name: String(fields[0]), url: String(fields[1]), tokenFile: fields[2].isEmpty ? nil : String(fields[2]))
        }
    }

    public func find(_ name: String) throws -> Remote? {
        try list().first { $0.name == name }
    }

    public func add(_ remote: Remote) throws {
        try validateRefName(remote.name)
        _ = try RemoteURL(parsing: remote.url)
        for field in [remote.url, remote.tokenFile ?? ""] where field.contains(where: { $0 == "\t" || $0.isNewline }) {
            throw StoreError.invalidArgument("'\(field)': tabs and newlines are not allowed")
        }
        var all = try list()
        guard !all.contains(where: { $0.name == remote.name }) else {
            throw StoreError.invalidArgument("a remote named '\(remote.name)' exists already (lstore remote rm \(remote.name) first)")
        }
        all.append(remote)
        try save(all)
    }

    public func remove(_ name: String) throws {
        var all = try list()
        guard let index = all.firstIndex(where: { $0.name == name }) else { throw SyncError.unknownRemote(name) }
        all.remove(at: index)
        try save(all)
    }

    private func save(_ remotes: [Remote]) throws {
        let text = remotes.sorted { $0.name < $1.name }.map { "\($0.name)\t\($0.url)\t\($0.tokenFile ?? "")\n" }.joined()
        let temporary = "\(storePath)/tmp/remotes-\(getpid())-\(UInt64.random(in: 0...UInt64.max))"
        let fd = try systemCall("create", path: temporary) { open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644) }
        defer { close(fd) }
        let bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            offset += try systemCall("write", path: temporary) { bytes.withUnsafeBytes { write(fd, $0.baseAddress! + offset, $0.count - offset) } }
        }
        try systemCall("fsync", path: temporary) { fsync(fd) }
        try systemCall("rename", path: path) { rename(temporary, path) }
    }
}
