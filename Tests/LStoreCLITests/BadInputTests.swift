import Foundation
import LStoreTestSupport
import Testing

/// Bad input gets one clear line naming the input and the problem, a non-zero exit, and leaves
/// the store exactly as it was.
@Suite(.serialized)
struct BadInputTests {
    let scratch = TemporaryDirectory("bad")
    var store: String { scratch.sub("store") }

    init() throws {
        try lstoreOK(["init"], store: scratch.sub("store"))
        try sh("mkdir -p \(scratch.sub("ok"))/etc && echo hi > \(scratch.sub("ok"))/etc/motd")
        try lstoreOK(["commit", scratch.sub("ok"), "--ref", "base"], store: scratch.sub("store"))
    }

    /// The store's files and their contents, to compare before and after.
    func snapshot() throws -> String {
        try sh("cd \(store) && find . -path ./tmp -prune -o -type f ! -name '*.lock' ! -name lock -print0 | sort -z | xargs -0 sha256sum")
    }

    /// Runs a commit that must fail; checks the message, the exit status and that nothing changed.
    func expectRefused(_ arguments: [String], mentioning words: [String], sourceLabel: String,
                       sourceLocation: SourceLocation = #_sourceLocation) throws {
        let before = try snapshot()
        let result = try lstore(arguments, store: store)
        #expect(result.status != 0, "must fail: \(arguments)", sourceLocation: sourceLocation)
        let lines = result.stderr.split(separator: "\n")
        #expect(lines.count == 1, "one line: \(result.stderr)", sourceLocation: sourceLocation)
        #expect(result.stderr.contains(sourceLabel), "names the input: \(result.stderr)", sourceLocation: sourceLocation)
        for word in words {
            #expect(result.stderr.contains(word), "says '\(word)': \(result.stderr)", sourceLocation: sourceLocation)
        }
        #expect(try snapshot() == before, "the store is unchanged", sourceLocation: sourceLocation)
        #expect(try lstoreOK(["fsck"], store: store).contains("clean"), sourceLocation: sourceLocation)
    }

    /// Writes a tarball whose single entry has the name `name`, made with Python's tarfile.
    func tarball(_ file: String, entries: [(name: String, kind: String, target: String)]) throws -> String {
        let path = scratch.sub(file)
        let spec = entries.map { "(\"\($0.name)\", \"\($0.kind)\", \"\($0.target)\")" }.joined(separator: ", ")
        try sh("""
            python3 - <<'PY'
            import io, tarfile
            with tarfile.open("\(path)", "w", format=tarfile.PAX_FORMAT) as t:
                for name, kind, target in [\(spec)]:
                    info = tarfile.TarInfo(name)
                    if kind == "file":
                        data = b"owned\\n"; info.size = len(data); t.addfile(info, io.BytesIO(data))
                    elif kind == "symlink":
                        info.type = tarfile.SYMTYPE; info.linkname = target; t.addfile(info)
                    elif kind == "hardlink":
                        info.type = tarfile.LNKTYPE; info.linkname = target; t.addfile(info)
                    elif kind == "dir":
                        info.type = tarfile.DIRTYPE; t.addfile(info)
            PY
            """)
        return path
    }

    @Test func tarWithDotDotIsRefused() throws {
        let path = try tarball("dotdot.tar", entries: [("etc/../../evil", "file", "")])
        try expectRefused(["commit", path, "--ref", "evil"], mentioning: ["..", "etc/../../evil"], sourceLabel: path)
    }

    @Test func tarWithAbsolutePathIsRefused() throws {
        let path = try tarball("absolute.tar", entries: [("/etc/shadow", "file", "")])
        try expectRefused(["commit", path, "--ref", "evil"], mentioning: ["absolute", "/etc/shadow"], sourceLabel: path)
    }

    @Test func tarWritingThroughASymlinkIsRefused() throws {
        let path = try tarball("through.tar", entries: [("escape", "symlink", "/tmp"), ("escape/pwned", "file", "")])
        try expectRefused(["commit", path, "--ref", "evil"], mentioning: ["escape", "symlink"], sourceLabel: path)
    }

    @Test func tarHardlinkToNothingIsRefused() throws {
        let path = try tarball("link.tar", entries: [("a", "hardlink", "missing")])
        try expectRefused(["commit", path, "--ref", "evil"], mentioning: ["missing"], sourceLabel: path)
    }

    @Test func truncatedTarballIsRefused() throws {
        let big = scratch.sub("big")
        try sh("mkdir \(big) && head -c 3000000 /dev/urandom > \(big)/data && tar -cf \(scratch.sub("full.tar")) -C \(big) . && head -c 1500000 \(scratch.sub("full.tar")) > \(scratch.sub("cut.tar"))")
        try expectRefused(["commit", scratch.sub("cut.tar"), "--ref", "cut"], mentioning: [], sourceLabel: scratch.sub("cut.tar"))
    }

    @Test func garbageIsNotATarball() throws {
        try sh("head -c 10000 /dev/urandom > \(scratch.sub("noise.tar"))")
        try expectRefused(["commit", scratch.sub("noise.tar"), "--ref", "noise"], mentioning: [], sourceLabel: scratch.sub("noise.tar"))
    }

    @Test func missingSourceIsRefused() throws {
        try expectRefused(["commit", scratch.sub("nothing"), "--ref", "x"], mentioning: ["No such file"], sourceLabel: scratch.sub("nothing"))
    }

    @Test(.enabled(if: isRoot, "needs root to run as another user"))
    func unreadableFileIsRefused() throws {
        let tree = scratch.sub("locked")
        try sh("mkdir -p \(tree)/etc && echo secret > \(tree)/etc/shadow && chmod 000 \(tree)/etc/shadow && chmod -R a+rwX \(store) && chmod 755 \(scratch.path)")
        let before = try snapshot()
        let result = try run("/usr/bin/setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", lstoreBinary,
                                                 "--store", store, "commit", tree, "--ref", "locked"])
        #expect(result.status != 0)
        #expect(result.stderr.contains("\(tree)/etc/shadow") && result.stderr.contains("Permission denied"), "\(result.stderr)")
        #expect(result.stderr.split(separator: "\n").count == 1, "\(result.stderr)")
        #expect(try snapshot() == before)
        #expect(try lstoreOK(["fsck"], store: store).contains("clean"))
    }

    @Test func checkoutRefusesANonEmptyDirectory() throws {
        let out = scratch.sub("full")
        try sh("mkdir \(out) && touch \(out)/precious")
        let result = try lstore(["checkout", "base", "--dir", out], store: store)
        #expect(result.status != 0)
        #expect(result.stderr.contains(out) && result.stderr.contains("not empty"), "\(result.stderr)")
        #expect(try sh("ls \(out)") == "precious\n")
    }

    @Test func unknownRevisionIsNamed() throws {
        let result = try lstore(["checkout", "nope", "--dir", scratch.sub("x")], store: store)
        #expect(result.status != 0 && result.stderr.contains("'nope'"), "\(result.stderr)")
    }

    @Test func corruptPackIsDetected() throws {
        // Flip one byte in the middle of the pack that holds the file: fsck --full and checkout fail
        // with a message naming the damage, and nothing is written out as if it were fine.
        let pack = try sh("ls \(store)/packs/*.pack | head -1").trimmingCharacters(in: .whitespacesAndNewlines)
        try sh("printf 'hi\\nX' > /dev/null; python3 -c \"import sys; p='\(pack)'; b=bytearray(open(p,'rb').read()); i=b.find(b'hi\\\\n'); b[i]^=1; open(p,'wb').write(b)\"")
        let fsck = try lstore(["fsck", "--full"], store: store)
        #expect(fsck.status != 0)
        #expect(fsck.stdout.contains("checksum") || fsck.stdout.contains("hash"), "\(fsck.stdout)")
        let checkout = try lstore(["checkout", "base", "--dir", scratch.sub("out")], store: store)
        #expect(checkout.status != 0 && checkout.stderr.contains("corrupt"), "\(checkout.stderr)")
    }

    @Test func damagedIndexIsReported() throws {
        let index = try sh("ls \(store)/packs/*.idx | head -1").trimmingCharacters(in: .whitespacesAndNewlines)
        try sh("truncate -s 100 \(index)")
        let fsck = try lstore(["fsck"], store: store)
        #expect(fsck.status != 0)
        #expect(fsck.stdout.contains("index") && fsck.stdout.contains("too short"), "\(fsck.stdout)")
        let checkout = try lstore(["checkout", "base", "--dir", scratch.sub("out")], store: store)
        #expect(checkout.status != 0 && checkout.stderr.contains("missing"), "\(checkout.stderr)")
    }

    @Test func notAStore() throws {
        let result = try lstore(["refs"], store: scratch.sub("ok"))
        #expect(result.status != 0 && result.stderr.contains("not an lstore store"), "\(result.stderr)")
    }

    /// The parser's own errors keep its exits: help 0, a usage error 64 with the usage; ours are
    /// one `lstore:` line and 1.
    @Test func usageErrorsAndHelpExitAsTheParserSays() throws {
        for command in [["boot", "stage", "--help"], ["help", "boot", "stage"]] {
            let help = try lstore(command)
            #expect(help.status == 0 && help.stdout.contains("USAGE: lstore boot stage") && help.stderr.isEmpty,
                    "\(command): \(help.status) \(help.stdout)\(help.stderr)")
        }
        for (command, message) in [
            (["boot", "stage", "base", "--no-such-option"], "Error: Unknown option '--no-such-option'"),
            (["boot", "stage", "base", "--kernel", "/etc/hostname"], "Error: --kernel needs --initrd: an initramfs made for that kernel"),
            (["checkout", "base"], "Error: give exactly one of --dir, --tar or --squashfs"),
        ] {
            let result = try lstore(command, store: store)
            #expect(result.status == 64 && result.stderr.hasPrefix(message + "\n") && result.stderr.contains("Usage: lstore"),
                    "\(command): \(result.status) \(result.stderr)")
        }
        let ours = try lstore(["boot", "default", "nothing", "--boot-dir", scratch.sub("boot")])
        #expect(ours.status == 1 && ours.stderr == "lstore: no layer named 'nothing' is staged in \(scratch.sub("boot"))/lstore (lstore boot list shows them)\n",
                "\(ours.stderr)")
    }
}
