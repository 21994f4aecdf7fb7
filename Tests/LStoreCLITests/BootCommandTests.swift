import Foundation
import LStoreTestSupport
import Testing

/// `lstore boot stage|list|default|rm` in a temporary boot directory: the entries parse, name files
/// that are there, the image mounts and holds the layer, and refused cases change nothing.
@Suite(.serialized, .enabled(if: isRoot, "needs root: loop mounts"))
struct BootCommandTests {
    let scratch = TemporaryDirectory("bootcli")
    var store: String { scratch.sub("store") }
    var boot: String { scratch.sub("boot") }

    init() throws {
        // A layer with two kernels (the newer one is staged) and their initramfs, and one with none.
        try sh("""
            cd \(scratch.path)
            mkdir -p layer/boot layer/etc layer/usr/lib/modules/6.1.0-10-amd64 layer/usr/lib/modules/6.1.0-9-amd64 bare/etc
            for v in 6.1.0-9-amd64 6.1.0-10-amd64; do
                echo "kernel $v" > layer/boot/vmlinuz-$v
                echo "initramfs $v" > layer/boot/initrd.img-$v
            done
            ln -s boot/vmlinuz-6.1.0-10-amd64 layer/vmlinuz
            echo gaming > layer/etc/hostname
            echo bare > bare/etc/hostname
            echo "host kernel" > host-vmlinuz
            echo "host initramfs" > host-initrd
            """)
        try lstoreOK(["init"], store: scratch.sub("store"))
        try lstoreOK(["commit", scratch.sub("layer"), "--ref", "steve/gaming"], store: scratch.sub("store"))
        try lstoreOK(["commit", scratch.sub("bare"), "--ref", "bare"], store: scratch.sub("store"))
    }

    /// A BLS entry's keys and values.
    func entry(_ path: String) throws -> [String: String] {
        let text = try String(contentsOfFile: path, encoding: .utf8)
        var fields: [String: String] = [:]
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: " ", maxSplits: 1).map(String.init)
            #expect(parts.count == 2 && fields[parts[0]] == nil, "one key and a value per line: \(line)")
            fields[parts[0]] = parts.count == 2 ? parts[1] : ""
        }
        return fields
    }

    /// The kernel parameter `key=value`'s value.
    func parameter(_ key: String, in options: String?) -> String? {
        options?.split(separator: " ").first { $0.hasPrefix(key + "=") }.map { String($0.dropFirst(key.count + 1)) }
    }

    /// The files under `directory`, relative, sorted.
    func files(_ directory: String) throws -> [String] {
        try sh("cd \(directory) && find . -mindepth 1 | sort").split(separator: "\n").map(String.init)
    }

    @Test func stageWritesImageKernelAndEntry() throws {
        let out = try lstoreOK(["boot", "stage", "steve/gaming", "--boot-dir", boot, "--device", "LABEL=LSTORE",
                                "--options", "console=ttyS0 quiet", "--grub-scripts", scratch.sub("grub.d")], store: store)
        #expect(out.hasPrefix("staged steve-gaming: steve/gaming ("), "\(out)")
        let fields = try entry(boot + "/loader/entries/lstore-steve-gaming.conf")
        #expect(Set(fields.keys) == ["title", "version", "linux", "initrd", "options"])
        #expect(fields["version"] == "6.1.0-10-amd64", "the newest kernel, by version order")
        #expect(fields["title"]?.hasPrefix("lstore steve-gaming (") == true)
        // Paths are on the file system holding the boot directory: here the one holding /var/tmp.
        let root = try sh("findmnt -n -o TARGET --target \(boot)").trimmingCharacters(in: .whitespacesAndNewlines)
        func onDisk(_ path: String?) -> String { (root == "/" ? "" : root) + (path ?? "") }
        #expect(try String(contentsOfFile: onDisk(fields["linux"]), encoding: .utf8) == "kernel 6.1.0-10-amd64\n")
        #expect(try String(contentsOfFile: onDisk(fields["initrd"]), encoding: .utf8) == "initramfs 6.1.0-10-amd64\n")
        let options = fields["options"]
        #expect(options?.hasPrefix("boot=lstore lstore.device=LABEL=LSTORE lstore.image=") == true, "\(options ?? "")")
        #expect(options?.hasSuffix(" console=ttyS0 quiet") == true)
        // The image named by lstore.image mounts and holds the layer.
        let image = onDisk(parameter("lstore.image", in: options))
        #expect(image == boot + "/lstore/steve-gaming/image.sfs")
        let mountPoint = scratch.sub("mnt")
        try sh("mkdir \(mountPoint) && mount -t squashfs -o loop,ro \(image) \(mountPoint)")
        defer { _ = try? sh("umount \(mountPoint)") }
        #expect(try manifest(mountPoint, options: ["--mtime-seconds"]) == manifest(scratch.sub("layer"), options: ["--mtime-seconds"]))
        // GRUB: the layer's menu entry in BOOT/lstore/grub.cfg, and the script that includes it.
        let grub = try String(contentsOfFile: boot + "/lstore/grub.cfg", encoding: .utf8)
        #expect(grub.contains("menuentry 'lstore steve-gaming (") && grub.contains("--id lstore-steve-gaming {"))
        #expect(grub.contains("\tlinux \(fields["linux"]!) \(options!)\n\tinitrd \(fields["initrd"]!)\n"))
        #expect(!grub.contains("set default"))
        let script = scratch.sub("grub.d/42_lstore")
        #expect(try sh("test -x \(script) && sh -n \(script) && echo ok") == "ok\n")
        // What grub-mkconfig gets from it, with grub-probe and grub-mkrelpath answering as for an
        // ext4 partition in a GPT disk; and nothing, with a warning, when GRUB cannot read it.
        try sh("""
            mkdir \(scratch.sub("bin"))
            printf '#!/bin/sh\\ncase $1 in --target=fs_uuid) echo 1234-ABCD;; --target=partmap) echo gpt;; --target=fs) echo ext2;; esac\\n' \\
                > \(scratch.sub("bin/grub-probe"))
            printf '#!/bin/sh\\necho /lstore/grub.cfg\\n' > \(scratch.sub("bin/grub-mkrelpath"))
            chmod +x \(scratch.sub("bin"))/*
            """)
        let found = try run("/bin/sh", [script], environment: ["PATH": scratch.sub("bin") + ":/usr/bin:/bin"])
        #expect(found.succeeded && found.stderr.isEmpty)
        #expect(found.stdout == "insmod part_gpt\ninsmod ext2\nsearch --no-floppy --fs-uuid --set=lstore_root 1234-ABCD\n"
            + "source ($lstore_root)/lstore/grub.cfg\n", "\(found.stdout)")
        try sh("printf '#!/bin/sh\\necho cannot find a GRUB drive >&2; exit 1\\n' > \(scratch.sub("bin/grub-probe"))")
        let lost = try run("/bin/sh", [script], environment: ["PATH": scratch.sub("bin") + ":/usr/bin:/bin"])
        #expect(lost.succeeded && lost.stdout.isEmpty && lost.stderr.contains("left out of the menu"), "\(lost.stderr)")
        #expect(try files(boot) == [
            "./loader", "./loader/entries", "./loader/entries/lstore-steve-gaming.conf", "./lstore", "./lstore/grub.cfg",
            "./lstore/steve-gaming", "./lstore/steve-gaming/grub.cfg", "./lstore/steve-gaming/image.sfs",
            "./lstore/steve-gaming/initrd.img", "./lstore/steve-gaming/layer.json", "./lstore/steve-gaming/vmlinuz",
        ], "nothing temporary left")
    }

    @Test func listDefaultAndRemove() throws {
        try sh("mkdir -p \(boot)/loader && printf 'timeout 3\\ndefault other.conf\\n' > \(boot)/loader/loader.conf")
        try lstoreOK(["boot", "stage", "steve/gaming", "--boot-dir", boot, "--device", "LABEL=L"], store: store)
        try lstoreOK(["boot", "stage", "bare", "--as", "fallback", "--boot-dir", boot, "--device", "LABEL=L",
                      "--kernel", scratch.sub("host-vmlinuz"), "--initrd", scratch.sub("host-initrd")], store: store)
        var listed = try JSONSerialization.jsonObject(with: Data(try lstoreOK(["boot", "list", "--boot-dir", boot, "--json"]).utf8)) as! [[String: Any]]
        #expect(listed.map { $0["name"] as? String } == ["fallback", "steve-gaming"])
        #expect(listed.allSatisfy { ($0["default"] as? Bool) == false && ($0["imageBytes"] as? Int ?? 0) > 0 })
        let commit = try lstoreOK(["show", "steve/gaming", "--json"], store: store)
        #expect(commit.contains(listed[1]["commit"] as! String))
        #expect(try String(contentsOfFile: boot + "/lstore/fallback/vmlinuz", encoding: .utf8) == "host kernel\n")

        #expect(try lstoreOK(["boot", "default", "steve-gaming", "--boot-dir", boot]) == "default: steve-gaming\n")
        #expect(try String(contentsOfFile: boot + "/loader/loader.conf", encoding: .utf8) == "default lstore-steve-gaming.conf\ntimeout 3\n")
        // Unless grub-reboot chose an entry for the next boot only (Debian's 00_header sets boot_once).
        #expect(try String(contentsOfFile: boot + "/lstore/grub.cfg", encoding: .utf8)
            .hasSuffix("if [ -z \"${boot_once}\" ]; then set default=\"lstore-steve-gaming\"; fi\n"))
        let text = try lstoreOK(["boot", "list", "--boot-dir", boot])
        #expect(text.split(separator: "\n").map { $0.split(separator: "\t").first.map(String.init) } == ["  fallback", "* steve-gaming"],
                "\(text)")

        #expect(try lstoreOK(["boot", "rm", "steve-gaming", "--boot-dir", boot]) == "removed steve-gaming\n")
        #expect(try String(contentsOfFile: boot + "/loader/loader.conf", encoding: .utf8) == "timeout 3\n")
        let grub = try String(contentsOfFile: boot + "/lstore/grub.cfg", encoding: .utf8)
        #expect(!grub.contains("steve-gaming"))
        listed = try JSONSerialization.jsonObject(with: Data(try lstoreOK(["boot", "list", "--boot-dir", boot, "--json"]).utf8)) as! [[String: Any]]
        #expect(listed.map { $0["name"] as? String } == ["fallback"])
        #expect(try files(boot).filter { $0.contains("steve-gaming") }.isEmpty)
    }

    @Test func espApartHoldsKernelsAndEntries() throws {
        let esp = scratch.sub("esp")
        try lstoreOK(["boot", "stage", "steve/gaming", "--as", "g", "--boot-dir", boot, "--esp", esp, "--device", "LABEL=L"], store: store)
        #expect(try files(esp) == ["./loader", "./loader/entries", "./loader/entries/lstore-g.conf", "./lstore", "./lstore/g",
                                   "./lstore/g/initrd.img", "./lstore/g/vmlinuz"])
        #expect(try files(boot) == ["./lstore", "./lstore/g", "./lstore/g/grub.cfg", "./lstore/g/image.sfs", "./lstore/g/layer.json",
                                    "./lstore/grub.cfg"])
        try lstoreOK(["boot", "rm", "g", "--boot-dir", boot, "--esp", esp])
        #expect(try files(esp) == ["./loader", "./loader/entries", "./lstore"])
    }

    /// On a file system of its own, as /boot is: paths from its root and its UUID, found by lstore.
    @Test func deviceAndPathsComeFromTheFileSystem() throws {
        let disk = scratch.sub("boot.ext4"), mountPoint = scratch.sub("bootfs")
        let uuid = "0d0c7c42-5e1a-4c7e-9a55-7c3a1b0f0b0e"
        try sh("mkfs.ext4 -q -U \(uuid) \(disk) 32M && mkdir \(mountPoint) && mount -o loop \(disk) \(mountPoint)")
        defer { _ = try? sh("umount \(mountPoint)") }
        try lstoreOK(["boot", "stage", "steve/gaming", "--boot-dir", mountPoint], store: store)
        let fields = try entry(mountPoint + "/loader/entries/lstore-steve-gaming.conf")
        #expect(fields["linux"] == "/lstore/steve-gaming/vmlinuz")
        #expect(fields["initrd"] == "/lstore/steve-gaming/initrd.img")
        #expect(fields["options"] == "boot=lstore lstore.device=UUID=\(uuid) lstore.image=/lstore/steve-gaming/image.sfs rd.systemd.gpt_auto=0")
        #expect(try String(contentsOfFile: mountPoint + "/lstore/grub.cfg", encoding: .utf8)
            .contains("\tsearch --no-floppy --fs-uuid --set=root \(uuid)\n"))
    }

    /// `--delta-from`: each layer's image holds what differs from the one under it, the entry
    /// stacks them, and the kernel's overlay of the three images is the top layer's tree. A layer
    /// others stand on cannot be removed, or staged again at another commit.
    @Test func stackedStagesStoreTheBaseOnce() throws {
        try sh("""
            cd \(scratch.path)
            cp -a layer child && rm child/etc/hostname && echo child > child/etc/child
            cp -a child grandchild && rm grandchild/etc/child && echo grand > grandchild/etc/grand
            """)
        try lstoreOK(["commit", scratch.sub("child"), "--ref", "child", "--parent", "steve/gaming"], store: store)
        try lstoreOK(["commit", scratch.sub("grandchild"), "--ref", "grandchild", "--parent", "child"], store: store)
        let device = ["--boot-dir", boot, "--device", "LABEL=L"]
        try lstoreOK(["boot", "stage", "steve/gaming", "--as", "base"] + device, store: store)
        #expect(try lstoreOK(["boot", "stage", "child", "--delta-from", "base"] + device, store: store).contains(" over base\n"))
        try lstoreOK(["boot", "stage", "grandchild", "--delta-from", "child"] + device, store: store)

        let root = try sh("findmnt -n -o TARGET --target \(boot)").trimmingCharacters(in: .whitespacesAndNewlines)
        let options = try entry(boot + "/loader/entries/lstore-grandchild.conf")["options"]
        let images = parameter("lstore.image", in: options)?.split(separator: ":").map { (root == "/" ? "" : root) + $0 }
        #expect(images == ["base", "child", "grandchild"].map { boot + "/lstore/\($0)/image.sfs" }, "\(options ?? "")")
        #expect(try overlayManifest(images ?? [], in: scratch, options: ["--mtime-seconds"])
            == manifest(scratch.sub("grandchild"), options: ["--mtime-seconds"]))
        let listed = try JSONSerialization.jsonObject(with: Data(try lstoreOK(["boot", "list", "--boot-dir", boot, "--json"]).utf8)) as! [[String: Any]]
        #expect(listed.map { $0["stack"] as? [String] ?? [] } == [[], ["base"], ["base", "child"]])
        #expect(try lstoreOK(["boot", "list", "--boot-dir", boot]).contains("\tover child\n"))

        let before = try sh("cd \(boot) && find . -type f | sort | xargs md5sum")
        func refused(_ arguments: [String], _ message: String) throws {
            let result = try lstore(["boot"] + arguments, store: store)
            #expect(result.status == 1 && result.stderr == "lstore: \(message)\n", "\(arguments): \(result.stderr)")
            #expect(try sh("cd \(boot) && find . -type f | sort | xargs md5sum") == before, "\(arguments) changed nothing")
        }
        let baseCommit = String((listed[0]["commit"] as? String ?? "").prefix(12))
        try refused(["rm", "base", "--boot-dir", boot], "cannot remove base: child, grandchild are staged over it (lstore boot rm child grandchild first)")
        try refused(["rm", "child", "--boot-dir", boot], "cannot remove child: grandchild is staged over it (lstore boot rm grandchild first)")
        try refused(["stage", "bare", "--as", "base", "--kernel", scratch.sub("host-vmlinuz"), "--initrd", scratch.sub("host-initrd")] + device,
                    "child, grandchild are staged over base (commit \(baseCommit)): stage them again or remove them first")
        try refused(["stage", "steve/gaming", "--as", "base", "--delta-from", "grandchild"] + device,
                    "grandchild is staged over base: base cannot be staged over it")
        try refused(["stage", "child", "--delta-from", "nothing"] + device, "no layer named 'nothing' is staged in \(boot)/lstore: stage it first")
        // The same commit again is fine: the image is the same, bytes for bytes.
        try lstoreOK(["boot", "stage", "steve/gaming", "--as", "base"] + device, store: store)
        #expect(try sh("cd \(boot) && find . -type f | sort | xargs md5sum") == before)
        for name in ["grandchild", "child", "base"] { try lstoreOK(["boot", "rm", name, "--boot-dir", boot]) }
        #expect(try files(boot).filter { $0.hasSuffix(".sfs") }.isEmpty)
    }

    @Test(arguments: [
        (["bare"], "bare has no kernel (/boot/vmlinuz-*, /usr/lib/modules/*/vmlinuz): give --kernel and --initrd"),
        (["bare", "--kernel", "/nonexistent/vmlinuz", "--initrd", "/nonexistent/initrd"], "/nonexistent/vmlinuz: cannot read"),
        (["bare", "--kernel", "/etc/hostname"], "--kernel needs --initrd"),
        (["steve/gaming", "--as", "../escape"], "'../escape' cannot name a staged layer"),
        (["steve/gaming", "--device", "sda1"], "--device must be /dev/NAME, UUID=UUID or LABEL=LABEL"),
        (["steve/gaming", "--options", "init=\"/bin/sh\""], "--options cannot hold quotes"),
        (["nosuchref"], "nosuchref"),
    ])
    func refusedStagesSayOneLineAndWriteNothing(_ arguments: [String], _ message: String) throws {
        let result = try lstore(["boot", "stage"] + arguments + ["--boot-dir", boot], store: store)
        #expect(result.status != 0)
        let lines = result.stderr.split(separator: "\n").filter { !$0.hasPrefix("Usage:") && !$0.hasPrefix("  See '") }
        #expect(lines.count == 1 && lines[0].contains(message), "\(result.stderr)")
        let left = try sh("find \(scratch.path) -path '\(boot)/*' ! -type d")
        #expect(left.isEmpty, "nothing written: \(left)")
    }

    /// A boot partition without room for the image: refused before writing, with the numbers, and
    /// no entry, no half image, no temporary directory, the layer staged before under that name
    /// untouched.
    @Test func aFullBootPartitionIsRefusedBeforeWriting() throws {
        let small = scratch.sub("small")
        try sh("mkdir \(small) && mount -t tmpfs -o size=256k lstore-test \(small)")
        defer { _ = try? sh("umount \(small)") }
        try lstoreOK(["boot", "stage", "steve/gaming", "--as", "g", "--boot-dir", small, "--device", "LABEL=L"], store: store)
        let before = try sh("cd \(small) && find . | sort && cat lstore/g/layer.json loader/entries/lstore-g.conf")
        try sh("cp -a \(scratch.sub("layer")) \(scratch.sub("big")) && head -c 1000000 /dev/urandom > \(scratch.sub("big"))/etc/noise")
        try lstoreOK(["commit", scratch.sub("big"), "--ref", "big"], store: store)
        let result = try lstore(["boot", "stage", "big", "--as", "g", "--boot-dir", small, "--device", "LABEL=L"], store: store)
        let message = try #require(result.stderr.split(separator: "\n").first.map(String.init))
        #expect(result.status == 1 && result.stderr.split(separator: "\n").count == 1
            && message.range(of: #"^lstore: .*/small/lstore has 0\.[0-9] MiB free; staging g needs about 1\.[0-9] MiB \(its image about 1\.[0-9] MiB\): free some \(lstore boot rm NAME\) or give --boot-dir on another file system$"#,
                             options: .regularExpression) != nil, "\(result.stderr)")
        #expect(try sh("cd \(small) && find . | sort && cat lstore/g/layer.json loader/entries/lstore-g.conf") == before)
    }

    @Test func layerWithKernelButNoInitramfsIsRefused() throws {
        try sh("mkdir -p \(scratch.sub("noinitrd"))/boot && echo k > \(scratch.sub("noinitrd"))/boot/vmlinuz-6.1.0-1-amd64")
        try lstoreOK(["commit", scratch.sub("noinitrd"), "--ref", "noinitrd"], store: store)
        let result = try lstore(["boot", "stage", "noinitrd", "--boot-dir", boot], store: store)
        #expect(result.status == 1 && result.stderr == "lstore: noinitrd: kernel 6.1.0-1-amd64 has no initramfs in the layer "
            + "(/boot/initrd.img-VERSION, /boot/initramfs-VERSION.img, /usr/lib/modules/VERSION/initrd): give --initrd\n", "\(result.stderr)")
    }

    @Test func helpIsPrinted() throws {
        for command in [["boot", "--help"], ["boot", "stage", "--help"], ["checkout", "--help"]] {
            let result = try lstore(command)
            #expect(result.status == 0 && result.stdout.contains("USAGE: lstore \(command.dropLast().joined(separator: " "))"),
                    "\(command): \(result.stdout)\(result.stderr)")
        }
        #expect(try lstoreOK(["boot", "stage", "--help"]).contains("--boot-dir <dir>"))
    }

    @Test func defaultAndRemoveOfUnknownNamesAreRefused() throws {
        for command in ["default", "rm"] {
            let result = try lstore(["boot", command, "nothing", "--boot-dir", boot])
            #expect(result.status == 1 && result.stderr == "lstore: no layer named 'nothing' is staged in \(boot)/lstore (lstore boot list shows them)\n",
                    "\(result.stderr)")
        }
    }
}
