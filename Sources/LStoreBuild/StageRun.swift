import CLStoreSys
import Foundation
import LStoreImage
import LStoreStore
import LStoreTree
#if canImport(Glibc)
import Glibc
#endif

/// RUN: the command's environment and key, the parent's image, the sandbox, the upper directory
/// read back (spec/build.md §4, §5).
extension Stage {
    mutating func runStep(_ instruction: Instruction) throws {
        if let flag = instruction.flags.first { throw fail(instruction, "RUN: --\(flag.name) is not supported") }
        let argv = instruction.json ?? (shell + [instruction.arguments])
        guard !argv.isEmpty, !argv[0].isEmpty else { throw fail(instruction, "RUN: no command") }
        let tree = try currentTree()
        let owner = try account(tree, instruction)
        let envList = Self.runEnvironment(arguments: arguments, env: env, owner: owner, epoch: epoch)
        let lines = Self.runKeyLines(argv: argv, owner: owner, cwd: workdir, environment: envList)
        try step(instruction, key: key(instruction, lines)) { stage, tree, ingest in
            try stage.execute(instruction, argv: argv, environment: envList, owner: owner, tree: tree, ingest: ingest)
        }
    }

    func execute(_ instruction: Instruction, argv: [String], environment: [String], owner: Account, tree: Node,
                 ingest: Ingest) throws {
        var scratch = store.scratchDirectory("build")
        if !scratch.hasPrefix("/") { scratch = FileManager.default.currentDirectoryPath + "/" + scratch }
        try FileManager.default.createDirectory(atPath: (scratch as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        defer { if getenv("LSTORE_DEBUG_KEEP") == nil { try? removeTree(scratch) } }
        let lower = scratch + "/lower", upper = scratch + "/upper", work = scratch + "/work", rootDir = scratch + "/root"
        let points = scratch + "/mount-points"
        for directory in [scratch, lower, upper, work, rootDir, points] {
            guard mkdir(directory, 0o700) == 0 || errno == EEXIST else {
                throw BuildError("\(directory): cannot be made: \(String(cString: strerror(errno)))")
            }
        }
        // The lower layer: the parent's image, written from the store's blocks.
        var image: String?
        if current != nil {
            image = scratch + "/parent.sfs"
            let settings = ImageSettings(threads: options.threads)
            try writeImage(tree, source: StoreBlockSource(store: store), options: settings.options(for: store, time: epoch), to: image!)
        }
        // The upper directory stands for the root: it has the root's metadata.
        try copyMetadata(tree.metadata, to: upper)
        let pointsUsed = try makeMountPoints(tree, in: points)
        let request = SandboxRequest(image: image, lower: lower, mountPoints: pointsUsed ? points : nil, upper: upper, work: work,
                                     root: rootDir, resolvConf: resolvConf(tree), isolateNetwork: options.isolateNetwork,
                                     hostname: "lstore-build", uid: owner.uid, gid: owner.gid, groups: owner.groups, cwd: workdir,
                                     argv: argv, environment: environment, result: scratch + "/result.json")
        var tail = OutputTail()
        let result = try Sandbox.run(request, spec: scratch + "/sandbox.json", executable: options.executable) { bytes in
            tail.append(bytes)
            builder.tell(job, .output(bytes))
        }
        if let error = result.error { throw BuildError("the sandbox could not be made: \(error)") }
        let status = result.status ?? 255
        guard status == 0 else {
            let last = tail.lines(20)
            throw BuildError("\(instruction.text.prefix(200)): exited with status \(status)"
                             + (last.isEmpty ? "" : "; its last lines:\n" + last.map { "  " + $0 }.joined(separator: "\n")))
        }
        try UpperCapture(epoch: epoch).apply(upper: upper, onto: tree, ingest: ingest)
    }

    /// Makes, in `directory`, the mount points (/proc, /sys, /dev, /tmp, /etc/resolv.conf) the
    /// tree lacks, with the metadata of the directories above them that it has; false when none.
    func makeMountPoints(_ tree: Node, in directory: String) throws -> Bool {
        var made = false
        for name in ["proc", "sys", "dev", "tmp"] where tree.resolve("/" + name)?.node.directory == nil {
            guard tree.directory?.child(named: Array(name.utf8)) == nil else {
                throw BuildError("/\(name) is not a directory in the parent: RUN needs it for its mount")
            }
            mkdir(directory + "/" + name, 0o755)
            made = true
        }
        if !options.isolateNetwork, tree.resolve("/etc/resolv.conf") == nil, tree.directory?.child(named: Array("etc".utf8)).map({ $0.directory != nil }) ?? true {
            mkdir(directory + "/etc", 0o755)
            if let etc = tree.directory?.child(named: Array("etc".utf8)) { try copyMetadata(etc.metadata, to: directory + "/etc") }
            FileManager.default.createFile(atPath: directory + "/etc/resolv.conf", contents: Data())
            made = true
        }
        return made
    }

    func resolvConf(_ tree: Node) -> String? {
        guard !options.isolateNetwork, FileManager.default.fileExists(atPath: options.resolvConf) else { return nil }
        if let found = tree.resolve("/etc/resolv.conf"), case .regular = found.node.content, found.path == "/etc/resolv.conf" {
            return options.resolvConf
        }
        return tree.resolve("/etc/resolv.conf") == nil && tree.directory?.child(named: Array("etc".utf8)).map({ $0.directory != nil }) ?? true
            ? options.resolvConf : nil
    }

    func copyMetadata(_ metadata: Metadata, to path: String) throws {
        guard chown(path, metadata.uid, metadata.gid) == 0, chmod(path, mode_t(metadata.permissions)) == 0 else {
            throw BuildError("\(path): cannot set its owner and mode: \(String(cString: strerror(errno)))")
        }
        var times = [timespec(tv_sec: Int(metadata.mtime.seconds), tv_nsec: Int(metadata.mtime.nanoseconds)),
                     timespec(tv_sec: Int(metadata.mtime.seconds), tv_nsec: Int(metadata.mtime.nanoseconds))]
        utimensat(AT_FDCWD, path, &times, 0)
        for xattr in metadata.xattrs {
            _ = xattr.value.withUnsafeBytes { lsetxattr(path, String(decoding: xattr.name, as: UTF8.self), $0.baseAddress, $0.count, 0) }
        }
    }
}

/// The last lines a RUN wrote, for its failure's message.
struct OutputTail {
    private var bytes: [UInt8] = []

    mutating func append(_ more: [UInt8]) {
        bytes += more
        if bytes.count > 16384 { bytes.removeFirst(bytes.count - 8192) }
    }

    func lines(_ count: Int) -> [String] {
        String(decoding: bytes, as: UTF8.self).split(whereSeparator: \.isNewline).suffix(count).map(String.init)
    }
}
