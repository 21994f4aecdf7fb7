import LStoreStore
import LStoreTree
import Testing

/// `OverlayDelta` on small trees built by hand: what is in the delta, and in which form. The kernel
/// proves the result by mounting it (LStoreCLITests' DeltaTests); these pin the rules of
/// spec/boot.md §10 one by one.
@Suite struct OverlayDeltaTests {
    static func file(_ name: String, _ data: UInt8, mode: UInt16 = 0o644) -> Node {
        Node(name: Array(name.utf8), metadata: Metadata(kind: .regular, permissions: mode),
             content: .regular(RegularFile(size: 1, content: Digest([UInt8](repeating: data, count: 32)))))
    }

    static func dir(_ name: String, mode: UInt16 = 0o755, _ children: [Node]) -> Node {
        let node = Node(name: Array(name.utf8), metadata: Metadata(kind: .directory, permissions: mode),
                        content: .directory(Directory(children: children)))
        node.sortAll()
        return node
    }

    static func link(_ name: String, to holder: String) -> Node {
        Node(name: Array(name.utf8), metadata: Metadata(kind: .regular, permissions: 0), content: .hardlink(path: Array(holder.utf8)))
    }

    /// Every path of `tree` with a word for its form: file, dir, dir+opaque, whiteout, link.
    static func listing(_ tree: Node) -> [String] {
        var lines: [String] = []
        tree.walk { path, node in
            guard !path.isEmpty else { return }
            let form: String
            switch node.content {
            case .directory: form = node.metadata.xattrs.contains(OverlayDelta.opaque) ? "dir+opaque" : "dir"
            case .device(0, 0) where node.metadata.kind == .characterDevice && node.metadata.permissions == 0: form = "whiteout"
            case .hardlink(let holder): form = "link to " + String(decoding: holder, as: UTF8.self)
            default: form = "file"
            }
            lines.append(String(decoding: path, as: UTF8.self) + " " + form)
        }
        return lines
    }

    static let base = dir("", [
        dir("etc", [file("a", 1), file("b", 2), file("c", 3)]),
        dir("usr", [dir("bin", [file("x", 4), file("y", 5)]), dir("lib", [file("z", 6)])]),
        dir("var", [file("old", 7)]),
        file("swap", 8),
    ])

    @Test func sameTreeGivesAnEmptyRoot() {
        #expect(Self.listing(OverlayDelta(base: Self.base, child: Self.base).root).isEmpty)
    }

    @Test func changesWhiteoutsAndTheDirectoriesOnTheWay() {
        let child = Self.dir("", [
            Self.dir("etc", [Self.file("a", 1), Self.file("b", 9), Self.file("new", 10)]),        // b changed, c deleted
            Self.dir("usr", [Self.dir("bin", [Self.file("x", 4), Self.file("y", 5, mode: 0o755)]), Self.dir("lib", [Self.file("z", 6)])]),
            Self.dir("var", mode: 0o700, [Self.file("old", 7)]),                                   // metadata only
            Self.file("swap", 8),
        ])
        #expect(Self.listing(OverlayDelta(base: Self.base, child: child).root) == [
            "etc dir", "etc/b file", "etc/c whiteout", "etc/new file",
            "usr dir", "usr/bin dir", "usr/bin/y file",
            "var dir",
        ])
    }

    @Test func replacedDirectoriesAreOpaque() {
        let child = Self.dir("", [
            Self.dir("etc", [Self.file("other", 11)]),                    // keeps nothing of etc: opaque
            Self.dir("usr", [Self.dir("bin", []), Self.dir("lib", [Self.file("z", 6)])]),  // bin emptied: opaque
            Self.file("var", 12),                                         // a directory became a file
            Self.dir("swap", [Self.file("inside", 13)]),                  // a file became a directory
        ])
        #expect(Self.listing(OverlayDelta(base: Self.base, child: child).root) == [
            "etc dir+opaque", "etc/other file",
            "swap dir+opaque", "swap/inside file",
            "usr dir", "usr/bin dir+opaque",
            "var file",
        ])
    }

    @Test func hardlinkSetsStayWhole() {
        let base = Self.dir("", [
            Self.dir("a", [Self.file("one", 1), Self.file("stay", 4)]),
            Self.dir("b", [Self.link("two", to: "a/one")]),
            Self.dir("c", [Self.file("keep", 2)]),
        ])
        let child = Self.dir("", [
            Self.dir("a", [Self.file("one", 3), Self.file("stay", 4)]),   // the set's data changed
            Self.dir("b", [Self.link("two", to: "a/one")]),               // the same entry as before
            Self.dir("c", [Self.file("keep", 2)]),
        ])
        #expect(Self.listing(OverlayDelta(base: base, child: child).root) == [
            "a dir", "a/one file", "b dir", "b/two link to a/one",
        ])
    }
}
