import LStoreStore
import LStoreTree
import Testing

/// A layer's entries applied onto its parent tree, in both deletion forms.
struct ChangeSetTests {
    /// An entry of a layer: a path and what it is.
    enum Item {
        case file(String, String)
        case dir(String)
        case symlink(String, String)
        case hardlink(String, String)
        case whiteoutDevice(String)
        case opaqueDir(String)

        var components: [[UInt8]] {
            let path: String
            switch self {
            case .file(let p, _), .dir(let p), .symlink(let p, _), .hardlink(let p, _), .whiteoutDevice(let p), .opaqueDir(let p): path = p
            }
            return path.split(separator: "/").map { Array($0.utf8) }
        }
    }

    /// Applies every layer in turn onto an empty root, each finished before the next.
    func build(_ layers: [[Item]], form: ChangeSet.Form = .oci) throws -> Node {
        let root = Node(name: [], metadata: Metadata(kind: .directory, permissions: 0o755), content: .directory(Directory()))
        let changes = ChangeSet(root: root, form: form)
        for layer in layers {
            for item in layer { try apply(item, to: changes) }
            try changes.finish()
        }
        return root
    }

    func apply(_ item: Item, to changes: ChangeSet) throws {
        let metadata: Metadata, content: Content
        switch item {
        case .file(_, let text):
            metadata = Metadata(kind: .regular, permissions: 0o644)
            content = .regular(RegularFile(size: UInt64(text.utf8.count), content: sha256(Array(text.utf8))))
        case .dir:
            metadata = Metadata(kind: .directory, permissions: 0o700)
            content = .directory(Directory())
        case .symlink(_, let target):
            metadata = Metadata(kind: .symlink, permissions: 0o777)
            content = .symlink(target: Array(target.utf8))
        case .hardlink(_, let target):
            metadata = Metadata(kind: .regular, permissions: 0o644)
            content = .hardlink(path: Array(target.utf8))
        case .whiteoutDevice:
            metadata = Metadata(kind: .characterDevice, permissions: 0)
            content = .device(major: 0, minor: 0)
        case .opaqueDir:
            var m = Metadata(kind: .directory, permissions: 0o755)
            m.xattrs = [OverlayDelta.opaque, Xattr("trusted.overlay.origin", [1])]
            metadata = m
            content = .directory(Directory())
        }
        try changes.apply(components: item.components, metadata: metadata, content: content)
    }

    /// The tree as lines: path, kind, and the content's digest, target or link.
    func lines(_ root: Node) -> [String] {
        var out: [String] = []
        root.walk { path, node in
            var line = "/" + path.printable + " \(node.metadata.kind) \(String(node.metadata.permissions, radix: 8))"
            switch node.content {
            case .regular(let file): line += " " + (file.content?.short ?? "-")
            case .symlink(let target): line += " -> " + target.printable
            case .hardlink(let path): line += " = /" + path.printable
            default: break
            }
            if !node.metadata.xattrs.isEmpty { line += " xattrs=\(node.metadata.xattrs.map { String(decoding: $0.name, as: UTF8.self) })" }
            out.append(line)
        }
        return out
    }

    func short(_ text: String) -> String { sha256(Array(text.utf8)).short }

    @Test func whiteoutsDeleteLowerEntriesOnly() throws {
        let root = try build([
            [.dir("etc"), .file("etc/a", "a"), .file("etc/b", "b"), .dir("var"), .file("var/x", "x")],
            // The whiteout of etc/b comes after the same layer's new etc/b: that one stays.
            [.file("etc/.wh.a", ""), .file("etc/b", "b2"), .file("etc/.wh.b", ""), .file(".wh.var", ""), .file("etc/.wh.missing", "")],
        ])
        #expect(lines(root) == ["/ directory 755", "/etc directory 700", "/etc/b file 644 \(short("b2"))"])
    }

    @Test func opaqueDirectoryKeepsOnlyItsLayer() throws {
        for marker in [true, false] {
            // The marker first (as umoci writes it) or last: the result is the same.
            var upper: [Item] = [.dir("etc"), .dir("etc/sub"), .file("etc/sub/new", "n"), .file("etc/top", "t")]
            if marker { upper.insert(.file("etc/.wh..wh..opq", ""), at: 0) } else { upper.append(.file("etc/.wh..wh..opq", "")) }
            let root = try build([
                [.dir("etc"), .file("etc/old", "o"), .dir("etc/sub"), .file("etc/sub/lower", "l"), .file("keep", "k")],
                upper,
            ])
            #expect(lines(root) == [
                "/ directory 755", "/etc directory 700", "/etc/sub directory 700", "/etc/sub/new file 644 \(short("n"))",
                "/etc/top file 644 \(short("t"))", "/keep file 644 \(short("k"))",
            ], "marker first: \(marker)")
        }
    }

    @Test func directoryOverDirectoryKeepsChildren() throws {
        let root = try build([[.dir("etc"), .file("etc/a", "a")], [.dir("etc")], [.file("etc", "now a file")]])
        #expect(lines(root) == ["/ directory 755", "/etc file 644 \(short("now a file"))"])
        let kept = try build([[.dir("etc"), .file("etc/a", "a")], [.dir("etc")]])
        #expect(lines(kept) == ["/ directory 755", "/etc directory 700", "/etc/a file 644 \(short("a"))"])
    }

    @Test func hardlinksToLowerLayersKeepTheirData() throws {
        let root = try build([
            [.dir("bin"), .file("bin/tool", "v1"), .hardlink("bin/alias", "bin/tool")],
            // A link to the lower file, then the file's first name replaced and its second deleted.
            [.hardlink("link", "bin/tool"), .file("bin/tool", "v2"), .file("bin/.wh.alias", "")],
        ])
        #expect(lines(root) == [
            "/ directory 755", "/bin directory 700", "/bin/tool file 644 \(short("v2"))", "/link file 644 \(short("v1"))",
        ])
        let linked = try build([[.file("a", "data")], [.hardlink("b", "a"), .hardlink("c", "b")]])
        #expect(lines(linked) == ["/ directory 755", "/a file 644 \(short("data"))", "/b file 0 = /a", "/c file 0 = /a"])
    }

    @Test func hostileEntriesAreRefused() throws {
        let cases: [([[Item]], String)] = [
            ([[.symlink("link", "/etc")], [.file("link/.wh.passwd", "")]], "'link' on its path is a symlink"),
            ([[.symlink("link", "/etc"), .file("link/evil", "x")]], "'link' on its path is a symlink"),
            ([[.file("a/.wh..wh.plnk", "")]], "a reserved whiteout name"),
            ([[.hardlink("b", "missing")]], "hardlink to 'missing', which is not an earlier file"),
            ([[.dir("d"), .hardlink("b", "d")]], "hardlink to 'd', which is not an earlier file"),
        ]
        for (layers, message) in cases {
            #expect {
                _ = try build(layers)
            } throws: { error in
                "\(error)".contains(message)
            }
        }
    }

    @Test func overlayForm() throws {
        let root = try build([
            [.dir("etc"), .file("etc/a", "a"), .file("etc/b", "b"), .dir("opt"), .file("opt/old", "o")],
            [.whiteoutDevice("etc/a"), .whiteoutDevice("not/there"), .opaqueDir("opt"), .file("opt/new", "n")],
        ], form: .overlay)
        #expect(lines(root) == [
            "/ directory 755", "/etc directory 700", "/etc/b file 644 \(short("b"))", "/opt directory 755",
            "/opt/new file 644 \(short("n"))",
        ])
        // In the OCI form the same entries are plain: a device and a directory with xattrs.
        let plain = try build([[.whiteoutDevice("dev0")]])
        #expect(lines(plain) == ["/ directory 755", "/dev0 character device 0"])
    }

    /// `OverlayDelta` of two trees, applied onto the first in the overlay form, gives the second.
    @Test func overlayDeltaRoundTrip() throws {
        let base = try build([[.dir("etc"), .file("etc/a", "a"), .file("etc/b", "b"), .dir("opt"), .file("opt/old", "o"),
                               .file("f", "f"), .hardlink("g", "f")]])
        let child = try build([[.dir("etc"), .file("etc/b", "b2"), .dir("opt"), .file("opt/new", "n"), .file("f", "f"),
                                .hardlink("g", "f"), .hardlink("h", "f")]])
        let delta = OverlayDelta(base: base, child: child).root
        let changes = ChangeSet(root: base, form: .overlay)
        var entries: [(path: [UInt8], node: Node)] = []
        delta.walk { path, node in if !path.isEmpty { entries.append((path, node)) } }
        for (path, node) in entries {
            try changes.apply(components: path.split(separator: UInt8(ascii: "/")).map(Array.init), metadata: node.metadata,
                              content: node.directory != nil ? .directory(Directory()) : node.content)
        }
        try changes.finish()
        #expect(lines(base) == lines(child))
    }
}
