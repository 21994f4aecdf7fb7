import ArgumentParser
import Foundation
import LStoreImage
import LStoreSquashFS
import LStoreStore
import LStoreTree
#if canImport(Glibc)
import Glibc
#endif

/// `lstore boot stage|list|default|rm`: layers made ready to boot, with their own kernel and
/// initramfs and a boot entry (spec/boot.md, section 10).
struct BootCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "boot",
        abstract: "Stage layers to boot: image, the layer's kernel and initramfs, and a boot entry.",
        discussion: """
            Images go to BOOT/lstore/NAME/, kernels and Boot Loader Specification entries to the ESP \
            (ESP/lstore/NAME/, ESP/loader/entries/lstore-NAME.conf), and GRUB's menu entries to \
            BOOT/lstore/grub.cfg, which the /etc/grub.d/42_lstore script that stage writes includes.
            """,
        subcommands: [Stage.self, List.self, Default.self, Remove.self])
}

/// Where staged layers go: `--boot-dir` and `--esp`.
struct BootPlaces: ParsableArguments {
    @Option(name: .customLong("boot-dir"), help: ArgumentHelp("Where images go (BOOT/lstore/NAME/).", valueName: "dir"))
    var bootDirectory = "/boot"

    @Option(help: ArgumentHelp("Where kernels and boot entries go (default: BOOT, or /efi or /boot/efi when it holds loader/).",
                               valueName: "dir"))
    var esp: String?

    var layout: BootLayout {
        if let esp { return BootLayout(bootDirectory: bootDirectory, esp: esp) }
        var chosen = bootDirectory
        // Only the system's own /boot looks further: a --boot-dir elsewhere keeps everything there.
        if bootDirectory == "/boot", !isDirectory("/boot/loader") {
            chosen = ["/efi", "/boot/efi"].first { isDirectory($0 + "/loader") } ?? bootDirectory
        }
        return BootLayout(bootDirectory: bootDirectory, esp: chosen)
    }
}

private func isDirectory(_ path: String) -> Bool {
    var info = stat()
    return stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR
}

private func requireName(_ name: String) throws {
    guard BootLayout.isValidName(name) else {
        throw ValidationError("'\(name)' cannot name a staged layer: use \(BootLayout.nameRule)")
    }
}

extension BootCommand {
    struct Stage: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "stage",
            abstract: "Write a layer's image, its own kernel and initramfs, and a boot entry for it.",
            discussion: """
                The kernel and initramfs come from the layer (/boot/vmlinuz-VERSION or \
                /usr/lib/modules/VERSION/vmlinuz, and the initramfs beside it), since the modules in the \
                image must match the kernel that boots it; --kernel and --initrd name other files. The \
                entry's options are boot=lstore lstore.device=DEV lstore.image=PATH, where PATH is the \
                image's path on its file system and DEV that file system's UUID, then --options. \
                With --delta-from BASE, the image holds only what differs from the layer staged as BASE, \
                and lstore.image stacks BASE's image (and what BASE stacks over) under it, so five \
                layers staged over one base store the base once. Staging a name again replaces it; a \
                layer others are staged over can only be staged again at the same commit.
                """)

        @OptionGroup var storeOptions: StoreOptions

        @Argument(help: "A ref or commit id.")
        var revision: String

        @Option(name: .customLong("as"), help: ArgumentHelp("The staged layer's name (default: the ref, / turned into -).",
                                                            valueName: "name"))
        var name: String?

        @OptionGroup var places: BootPlaces

        @Option(help: ArgumentHelp("The kernel to boot, instead of the layer's own (needs --initrd).", valueName: "file"))
        var kernel: String?

        @Option(help: ArgumentHelp("The initramfs to boot, instead of the layer's own.", valueName: "file"))
        var initrd: String?

        @Option(help: ArgumentHelp("Further kernel parameters for the entry, e.g. \"quiet console=ttyS0\".", valueName: "params"))
        var options: String?

        @Option(help: ArgumentHelp("lstore.device: the device holding the image (/dev/..., UUID=..., LABEL=...; default: the UUID of the file system holding BOOT).",
                                   valueName: "dev"))
        var device: String?

        @Option(name: .customLong("grub-scripts"), help: ArgumentHelp(
            "Where to write the 42_lstore GRUB script (default: /etc/grub.d when it exists and BOOT is /boot).", valueName: "dir"))
        var grubScripts: String?

        @Option(name: .customLong("delta-from"), help: ArgumentHelp(
            "Stage only what differs from the layer staged as BASE, booted stacked over its image.", valueName: "base"))
        var deltaFrom: String?

        @OptionGroup var imageOptions: ImageOptions

        var stagedName: String { name ?? revision.replacingOccurrences(of: "/", with: "-") }

        func validate() throws {
            try requireName(stagedName)
            if let deltaFrom {
                try requireName(deltaFrom)
                if deltaFrom == stagedName { throw ValidationError("--delta-from \(deltaFrom): a layer cannot be staged over itself") }
            }
            if kernel != nil && initrd == nil { throw ValidationError("--kernel needs --initrd: an initramfs made for that kernel") }
            let unsafe = Set("'\"\\$;{}`\n\r")
            if let options, options.contains(where: unsafe.contains) {
                throw ValidationError("--options cannot hold quotes, \\, $, ;, {, }, ` or newlines")
            }
            if let device {
                let forms = device.hasPrefix("/dev/") || device.hasPrefix("UUID=") || device.hasPrefix("LABEL=")
                guard forms, !device.contains(where: { $0.isWhitespace || unsafe.contains($0) || $0 == ":" }) else {
                    throw ValidationError("--device must be /dev/NAME, UUID=UUID or LABEL=LABEL, without spaces or quotes")
                }
            }
        }

        func run() throws {
            let name = stagedName
            let store = try storeOptions.open()
            let id = try store.resolve(revision)
            let commit = try store.commit(id)
            let root = try store.loadTree(commit.tree)
            let contents = StoreContentWriter(store: store)
            let found = try LayerKernel.find(in: root) { node in try readText(node, from: contents) }

            // What boots: checked before anything is written.
            let kernelSource: BootFile, initrdSource: BootFile
            var version = found?.version
            if let kernel {
                kernelSource = .host(kernel)
                let base = URL(fileURLWithPath: kernel).lastPathComponent
                version = base.hasPrefix("vmlinuz-") ? String(base.dropFirst("vmlinuz-".count)) : nil
            } else if let found {
                kernelSource = .layer(found.kernel.node, found.kernel.path)
            } else {
                throw CommandError("\(revision) has no kernel (/boot/vmlinuz-*, /usr/lib/modules/*/vmlinuz): give --kernel and --initrd")
            }
            if let initrd {
                initrdSource = .host(initrd)
            } else if let layerInitrd = found?.initrd {
                initrdSource = .layer(layerInitrd.node, layerInitrd.path)
            } else {
                throw CommandError("\(revision): kernel \(found?.version ?? "?") has no initramfs in the layer "
                    + "(\(LayerKernel.initrdPlaces)): give --initrd")
            }
            for case .host(let path) in [kernelSource, initrdSource] where access(path, R_OK) != 0 {
                throw FileError(path: path, operation: "cannot read", errno: errno)
            }

            // A delta over a staged layer: the base's own commit, and the stack under it.
            let layout = places.layout
            var stack: [String] = []
            var bootRoot = root
            if let deltaFrom {
                guard let base = layout.staged(deltaFrom) else {
                    throw CommandError("no layer named '\(deltaFrom)' is staged in \(layout.layersDirectory): stage it first")
                }
                if base.stack.contains(name) { throw CommandError("\(deltaFrom) is staged over \(name): \(name) cannot be staged over it") }
                guard let baseID = Digest(hex: base.commit), store.contains(baseID, kind: .commit) else {
                    throw CommandError("\(deltaFrom) was staged from commit \(base.commit.prefix(12)), which this store does not hold")
                }
                bootRoot = OverlayDelta(base: try store.loadTree(try store.commit(baseID).tree), child: root).root
                stack = base.stack + [deltaFrom]
            }
            // Layers staged over this name keep booting only if it stays at the same commit.
            if let previous = layout.staged(name), previous.commit != id.hex {
                let over = try layout.stackedOver(name)
                if !over.isEmpty {
                    let them = over.count == 1 ? "it" : "them"
                    throw CommandError("\(namesAre(over)) staged over \(name) (commit \(previous.commit.prefix(12))): "
                        + "stage \(them) again or remove \(them) first")
                }
            }
            try makeDirectories(layout.layersDirectory)
            try makeDirectories(layout.esp + "/lstore")
            try makeDirectories(layout.esp + "/loader/entries")

            // How the initramfs finds the image, and the boot loader the kernel.
            let imagePlace = FileSystemPlace(of: layout.layersDirectory)
            let imagePaths = (stack + [name]).map { joinPath(imagePlace?.pathInFileSystem ?? layout.layersDirectory, $0 + "/image.sfs") }
            let imageDevice = device ?? imagePlace?.uuid.map { "UUID=" + $0 }
            if imageDevice == nil {
                note("lstore: warning: cannot tell the UUID of the file system holding \(layout.layersDirectory)"
                    + " (\(imagePlace?.fileSystemType ?? "unknown")); the entry has no lstore.device: give --device")
            }
            let kernelPlace = FileSystemPlace(of: layout.esp + "/lstore")
            let kernelDirectory = joinPath(kernelPlace?.pathInFileSystem ?? layout.esp + "/lstore", name)
            var parameters = ["boot=lstore"] + (imageDevice.map { ["lstore.device=" + $0] } ?? []) + ["lstore.image=" + imagePaths.joined(separator: ":")]
            if let options { parameters += options.split(separator: " ").map(String.init) }
            let title = "lstore \(name) (\(id.short))"
            let entry = BootEntry(title: title, version: version, linux: kernelDirectory + "/vmlinuz",
                                  initrd: kernelDirectory + "/initrd.img", options: parameters.joined(separator: " "))

            // Everything into temporary directories, then renamed into place; the entry last.
            let staging = layout.layersDirectory + "/.\(name).lstore-tmp"
            let kernelStaging = layout.kernelsApart ? layout.esp + "/lstore/.\(name).lstore-tmp" : staging
            do {
                for directory in Set([staging, kernelStaging]) {
                    try removeTree(directory)
                    try makeDirectories(directory)
                }
                let imageOptions = try self.imageOptions.squashFSOptions(store: store, time: commit.time)
                try writeImageReporting(bootRoot, source: StoreBlockSource(store: store), options: imageOptions, to: staging + "/image.sfs",
                               display: layout.image(name))
                try syncPath(staging + "/image.sfs")
                try kernelSource.write(to: kernelStaging + "/vmlinuz", contents: contents)
                try initrdSource.write(to: kernelStaging + "/initrd.img", contents: contents)
                let layer = StagedLayer(name: name, revision: revision, commit: id.hex, kernelVersion: version, stack: stack)
                try writeFileAtomically(layer.json, to: staging + "/layer.json")
                try writeFileAtomically(entry.grubMenuEntry(id: "lstore-" + name, searchUUID: kernelPlace?.uuid), to: staging + "/grub.cfg")
                for directory in Set([staging, kernelStaging]) { try syncPath(directory) }
            } catch {
                try? removeTree(staging)
                try? removeTree(kernelStaging)
                throw error
            }
            try install(staging, as: layout.layerDirectory(name))
            if layout.kernelsApart { try install(kernelStaging, as: layout.kernelDirectory(name)) }
            try writeFileAtomically(entry.text, to: layout.entry(name))
            try layout.writeGrubConfiguration()
            // This machine's GRUB is only told about this machine's /boot.
            if let scripts = grubScripts ?? (places.bootDirectory == "/boot" && isDirectory("/etc/grub.d") ? "/etc/grub.d" : nil) {
                try writeGrubScript(in: scripts, configuration: realPath(layout.grubConfiguration))
            }
            var size = stat()
            stat(layout.image(name), &size)
            print("staged \(name): \(revision) (\(id.short)), kernel \(version ?? "from \(kernel ?? "?")"), image \(humanBytes(UInt64(size.st_size)))"
                + (deltaFrom.map { " over \($0)" } ?? ""))
            print("entry  \(layout.entry(name))")
        }

        /// Renames the finished directory `staging` to `final`, replacing what was there.
        private func install(_ staging: String, as final: String) throws {
            let old = staging.replacingOccurrences(of: ".lstore-tmp", with: ".lstore-old")
            try removeTree(old)
            if access(final, F_OK) == 0 { try systemCall("rename", path: final) { rename(final, old) } }
            try systemCall("rename", path: final) { rename(staging, final) }
            try removeTree(old)
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "list", abstract: "List staged layers: name, commit, image size, default.")

        @OptionGroup var places: BootPlaces
        @OptionGroup var output: OutputOptions

        func run() throws {
            let layout = places.layout
            let defaultName = layout.defaultName()
            var rows: [[String: Any]] = []
            for layer in try layout.staged() {
                var info = stat()
                let bytes = stat(layout.image(layer.name), &info) == 0 ? UInt64(info.st_size) : 0
                var row: [String: Any] = ["name": layer.name, "revision": layer.revision, "commit": layer.commit,
                                          "imageBytes": bytes, "default": layer.name == defaultName,
                                          "entry": layout.entry(layer.name)]
                if let version = layer.kernelVersion { row["kernelVersion"] = version }
                if !layer.stack.isEmpty { row["stack"] = layer.stack }
                rows.append(row)
                if !output.json {
                    let marker = layer.name == defaultName ? "*" : " "
                    print("\(marker) \(layer.name)\t\(String(layer.commit.prefix(12)))\t\(humanBytes(bytes))\t"
                        + "kernel \(layer.kernelVersion ?? "?")\t\(layer.revision)" + (layer.base.map { "\tover \($0)" } ?? ""))
                }
            }
            if output.json { try printJSON(rows) }
        }
    }

    struct Default: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "default", abstract: "Make a staged layer the default boot entry.")

        @Argument(help: "The staged layer's name.") var name: String
        @OptionGroup var places: BootPlaces

        func validate() throws { try requireName(name) }

        func run() throws {
            let layout = places.layout
            try requireStaged(name, layout)
            try writeFileAtomically(name + "\n", to: layout.defaultFile)
            try layout.writeLoaderDefault(name)
            try layout.writeGrubConfiguration()
            print("default: \(name)")
        }
    }

    struct Remove: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "rm", abstract: "Remove a staged layer: its entry, kernel, initramfs and image.")

        @Argument(help: "The staged layer's name.") var name: String
        @OptionGroup var places: BootPlaces

        func validate() throws { try requireName(name) }

        func run() throws {
            let layout = places.layout
            try requireStaged(name, layout)
            let over = try layout.stackedOver(name)
            if !over.isEmpty {
                throw CommandError("cannot remove \(name): \(namesAre(over)) staged over it (lstore boot rm \(over.joined(separator: " ")) first)")
            }
            // The entry first: a boot loader never sees an entry whose files are gone.
            if unlink(layout.entry(name)) != 0 && errno != ENOENT { throw FileError(path: layout.entry(name), operation: "unlink", errno: errno) }
            try removeTree(layout.kernelDirectory(name))
            try removeTree(layout.layerDirectory(name))
            if layout.defaultName() == name {
                try removeTree(layout.defaultFile)
                try layout.writeLoaderDefault(nil, removingOnly: name)
            }
            try layout.writeGrubConfiguration()
            print("removed \(name)")
        }
    }
}

/// "a is" or "a, b are": staged layers' names with the verb that agrees.
private func namesAre(_ names: [String]) -> String {
    names.joined(separator: ", ") + (names.count == 1 ? " is" : " are")
}

private func requireStaged(_ name: String, _ layout: BootLayout) throws {
    guard isDirectory(layout.layerDirectory(name)) else {
        throw CommandError("no layer named '\(name)' is staged in \(layout.layersDirectory) (lstore boot list shows them)")
    }
}

/// `base` + `/` + `name`, with one slash between them.
private func joinPath(_ base: String, _ name: String) -> String {
    base.hasSuffix("/") ? base + name : base + "/" + name
}

/// A Boot Loader Specification entry (type 1).
struct BootEntry {
    var title: String
    var version: String?
    var linux: String
    var initrd: String
    var options: String

    var text: String {
        var lines = ["title \(title)"]
        if let version { lines.append("version \(version)") }
        lines += ["linux \(linux)", "initrd \(initrd)", "options \(options)"]
        return lines.map { $0 + "\n" }.joined()
    }

    /// The same entry as a GRUB menu entry; `search` finds the file system holding the kernel.
    func grubMenuEntry(id: String, searchUUID: String?) -> String {
        var text = "menuentry '\(title)' --id \(id) {\n"
        if let searchUUID { text += "\tsearch --no-floppy --fs-uuid --set=root \(searchUUID)\n" }
        text += "\tlinux \(linux) \(options)\n\tinitrd \(initrd)\n}\n"
        return text
    }
}

/// A kernel or initramfs to stage: a file in the layer, or one on this machine.
enum BootFile {
    case layer(Node, String)
    case host(String)

    func write(to path: String, contents: StoreContentWriter) throws {
        switch self {
        case .host(let source):
            try FileManager.default.copyItem(atPath: source, toPath: path)
        case .layer(let node, let layerPath):
            guard case .regular(let file) = node.content else { throw CommandError("\(layerPath) in the layer is not a file") }
            let fd = try systemCall("open", path: path) { open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644) }
            defer { close(fd) }
            try contents.stream(file) { bytes in
                var offset = 0
                while offset < bytes.count {
                    offset += try systemCall("write", path: path) { Glibc.write(fd, bytes.baseAddress! + offset, bytes.count - offset) }
                }
            }
        }
        try syncPath(path)
    }
}

/// A small text file of the layer (e.g. Arch's `pkgbase`).
private func readText(_ node: Node, from contents: StoreContentWriter) throws -> String {
    guard case .regular(let file) = node.content, file.size <= 4096 else { return "" }
    var bytes: [UInt8] = []
    try contents.stream(file) { bytes.append(contentsOf: $0) }
    return String(decoding: bytes, as: UTF8.self)
}

/// `/etc/grub.d/42_lstore`: at `grub-mkconfig` time, includes BOOT/lstore/grub.cfg, found by its
/// file system's UUID, in GRUB's menu. It changes nothing when that file is gone.
private func writeGrubScript(in directory: String, configuration: String) throws {
    let quoted = "'" + configuration.replacingOccurrences(of: "'", with: "'\\''") + "'"
    let script = """
        #!/bin/sh
        # Written by `lstore boot stage`: adds the layers lstore staged to GRUB's menu.
        cfg=\(quoted)
        [ -f "$cfg" ] || exit 0
        probe=${grub_probe:-grub-probe}
        if ! uuid=$("$probe" --target=fs_uuid "$cfg") || ! path=$(grub-mkrelpath "$cfg"); then
            echo "42_lstore: GRUB cannot find $cfg; the layers lstore staged are left out of the menu" >&2
            exit 0
        fi
        # The modules GRUB needs to read that file system, as grub-mkconfig's own scripts load them.
        for module in $("$probe" --target=partmap "$cfg" 2>/dev/null); do echo "insmod part_$module"; done
        for module in $("$probe" --target=abstraction "$cfg" 2>/dev/null) $("$probe" --target=fs "$cfg" 2>/dev/null); do
            echo "insmod $module"
        done
        cat <<EOF
        search --no-floppy --fs-uuid --set=lstore_root $uuid
        source (\\$lstore_root)$path
        EOF

        """
    try makeDirectories(directory)
    let path = directory + "/42_lstore"
    try writeFileAtomically(script, to: path)
    try systemCall("chmod", path: path) { chmod(path, 0o755) }
}
