import Foundation
import LStoreStore
import LStoreTar
import LStoreTree
#if canImport(Glibc)
import Glibc
#endif

/// COPY and ADD: sources from the recipe's directory, destinations resolved in the tree, owners and
/// modes, archives unpacked (spec/build.md §3).
extension Stage {
    mutating func copyStep(_ instruction: Instruction) throws {
        var chownText: String?, chmodText: String?
        for flag in instruction.flags {
            switch flag.name {
            case "chown": chownText = try words.word(flag.value)
            case "chmod": chmodText = try words.word(flag.value)
            case "from": throw fail(instruction, "\(instruction.keyword) --from: multi-stage recipes are not supported")
            default: throw fail(instruction, "\(instruction.keyword): --\(flag.name) is not supported")
            }
        }
        let items = try instruction.json.map { try $0.map { try words.word($0) } } ?? words.words(instruction.arguments)
        guard items.count >= 2 else { throw fail(instruction, "\(instruction.keyword) needs a source and a destination") }
        let sources = Array(items.dropLast()), destination = items.last!
        if instruction.keyword == "ADD", let url = sources.first(where: { $0.contains("://") || $0.hasPrefix("git@") }) {
            throw fail(instruction, "ADD \(url): only files of the recipe's directory are added (fetch with RUN instead)")
        }
        var mode: UInt16?
        if let chmodText {
            guard let value = UInt16(chmodText, radix: 8), value <= 0o7777 else { throw fail(instruction, "--chmod=\(chmodText): an octal mode") }
            mode = value
        }
        let tree = try currentTree()
        var owner: (uid: UInt32, gid: UInt32)?
        if let chownText { owner = try chownAccount(chownText, tree, instruction) }
        var selections: [(name: [UInt8], node: Node)] = []
        for source in sources {
            do {
                selections += try context.select(source)
            } catch let error as BuildError {
                throw fail(instruction, "\(instruction.keyword) \(error.description)")
            }
        }
        let target = destination.hasPrefix("/") ? destination : workdir + "/" + destination
        let intoDirectory = destination.hasSuffix("/") || destination.hasSuffix("/.") || destination == "."
        if selections.count > 1 && !intoDirectory && tree.resolve(normalized(target))?.node.directory == nil {
            throw fail(instruction, "\(instruction.keyword): several sources go into a directory: end '\(destination)' with '/'")
        }
        let digest = try context.digest(selections)
        let archives = instruction.keyword == "ADD" ? selections.map { isArchive($0.node) } : selections.map { _ in false }
        let lines = ["sources \(Self.json(sources))", "destination \(target)\(intoDirectory ? "/" : "")", "chown \(owner.map { "\($0.uid):\($0.gid)" } ?? "-")",
                     "chmod \(mode.map { String($0, radix: 8) } ?? "-")", "inputs \(digest)", "archives \(Self.json(archives))"]
        try step(instruction, key: key(instruction, lines), inputs: [CommitHeader(key: "build-input", value: digest)]) { stage, tree, ingest in
            try stage.copy(selections, archives: archives, to: target, intoDirectory: intoDirectory, owner: owner, mode: mode,
                           tree: tree, ingest: ingest, instruction: instruction)
        }
    }

    func isArchive(_ node: Node) -> Bool {
        guard case .regular(let file) = node.content, let path = file.sourcePath else { return false }
        let fd = open(String(decoding: path, as: UTF8.self), O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var head = [UInt8](repeating: 0, count: 512)
        let count = head.withUnsafeMutableBytes { read(fd, $0.baseAddress, 512) }
        guard count >= 6 else { return false }
        if head.starts(with: [0x1f, 0x8b]) || head.starts(with: [0x42, 0x5a, 0x68]) || head.starts(with: [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00])
            || head.starts(with: [0x28, 0xb5, 0x2f, 0xfd]) { return true }
        return count == 512 && Array(head[257..<262]) == Array("ustar".utf8)
    }

    func copy(_ selections: [(name: [UInt8], node: Node)], archives: [Bool], to target: String, intoDirectory: Bool,
              owner: (uid: UInt32, gid: UInt32)?, mode: UInt16?, tree: Node, ingest: Ingest, instruction: Instruction) throws {
        // The files' data first, from the recipe's directory (its file cache skips what is unchanged).
        let pipeline = ingest.startFiles(cache: FileCache.load(for: context.directory, in: store))
        var expanded: [(name: [UInt8], node: Node, archive: Bool)] = []
        for (index, selection) in selections.enumerated() {
            if archives[index], case .regular(let file) = selection.node.content {
                let path = String(decoding: file.sourcePath ?? [], as: UTF8.self)
                expanded.append((selection.name, try TarReader().read(path, ingest: { size, read in try ingest.ingestStream(size: size, read: read) }).root, true))
            } else {
                expanded.append((selection.name, selection.node, false))
                selection.node.walk { _, node in
                    if case .regular = node.content { pipeline.submit(node) }
                }
            }
        }
        try pipeline.finish()
        let changes = ChangeSet(root: tree, form: .plain)
        let time = Timestamp(seconds: epoch)
        func metadata(_ original: Metadata, keepOwner: Bool) -> Metadata {
            var metadata = original
            if !keepOwner || owner != nil {
                metadata.uid = owner?.uid ?? 0
                metadata.gid = owner?.gid ?? 0
            }
            if let mode, metadata.kind != .symlink { metadata.permissions = mode }
            if metadata.mtime > time { metadata.mtime = time }
            metadata.xattrs = keepOwner ? metadata.xattrs : []
            return metadata
        }
        for (name, node, archive) in expanded {
            let isDirectory = node.directory != nil
            let destination = normalized(target)
            let (parent, missing): ([[UInt8]], [String])
            if isDirectory || intoDirectory {
                (parent, missing) = try existingPrefix(tree, destination, instruction)
            } else {
                let parentPath = (destination as NSString).deletingLastPathComponent
                let (p, m) = try existingPrefix(tree, parentPath, instruction)
                (parent, missing) = (p, m + [(destination as NSString).lastPathComponent])
            }
            var base = parent
            // Directories the destination lacks: made with the copy's owner.
            let madeCount = isDirectory || intoDirectory ? missing.count : missing.count - 1
            for component in missing.prefix(madeCount) {
                base.append(Array(component.utf8))
                let made = Metadata(kind: .directory, permissions: 0o755, uid: owner?.uid ?? 0, gid: owner?.gid ?? 0, mtime: time)
                try changes.apply(components: base, metadata: made, content: .directory(Directory()))
            }
            let top: [[UInt8]]
            if isDirectory {
                top = base
            } else if intoDirectory {
                top = base + [name]
            } else {
                top = base + [Array(missing.last!.utf8)]
            }
            var failure: Error?
            node.walk { relative, entry in
                guard failure == nil else { return }
                // A directory source gives its contents; the destination directory itself keeps its
                // metadata when it is there.
                if relative.isEmpty && isDirectory { return }
                let components = top + relative.split(separator: UInt8(ascii: "/")).map(Array.init)
                var content = entry.content
                var entryMetadata = entry.metadata
                if case .hardlink(let path) = entry.content, let holder = node.lookup(path) {
                    content = holder.content
                    entryMetadata = holder.metadata
                }
                content = entryContent(content)
                do {
                    try changes.apply(components: components, metadata: metadata(entryMetadata, keepOwner: archive), content: content)
                } catch {
                    failure = error
                }
            }
            if let failure { throw failure }
        }
        try changes.finish()
    }
}
