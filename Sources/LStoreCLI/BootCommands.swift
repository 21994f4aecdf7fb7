import ArgumentParser
import Foundation
import LStoreBoot
import LStoreStore
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

    var layout: BootLayout { BootLayout.choosing(bootDirectory: bootDirectory, esp: esp) }
}

private func requireName(_ name: String) throws {
    guard BootLayout.isValidName(name) else {
        throw ValidationError(BootError.invalidName(name).description)
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
            let stager = BootStager(store: try storeOptions.open(), layout: places.layout)
            let staged = try stager.stage(revision: revision, name: stagedName, deltaFrom: deltaFrom, kernel: kernel, initrd: initrd,
                                          device: device, options: options, image: try imageOptions.settings(),
                                          grubScripts: grubScripts, warn: { note("lstore: warning: " + $0) })
            print("staged \(staged.name): \(revision) (\(staged.commit.short)), "
                + "kernel \(staged.kernelVersion ?? "from \(staged.hostKernel ?? "?")"), image \(humanBytes(staged.imageBytes))"
                + (staged.deltaFrom.map { " over \($0)" } ?? ""))
            print("entry  \(staged.entry)")
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "list", abstract: "List staged layers: name, commit, image size, default.")

        @OptionGroup var places: BootPlaces
        @OptionGroup var output: OutputOptions

        func run() throws {
            var rows: [[String: Any]] = []
            for staged in try places.layout.list() {
                let layer = staged.layer
                var row: [String: Any] = ["name": layer.name, "revision": layer.revision, "commit": layer.commit,
                                          "imageBytes": staged.imageBytes, "default": staged.isDefault, "entry": staged.entry]
                if let version = layer.kernelVersion { row["kernelVersion"] = version }
                if !layer.stack.isEmpty { row["stack"] = layer.stack }
                rows.append(row)
                if !output.json {
                    print("\(staged.isDefault ? "*" : " ") \(layer.name)\t\(String(layer.commit.prefix(12)))\t\(humanBytes(staged.imageBytes))\t"
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
            try places.layout.setDefault(name)
            print("default: \(name)")
        }
    }

    struct Remove: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "rm", abstract: "Remove a staged layer: its entry, kernel, initramfs and image.")

        @Argument(help: "The staged layer's name.") var name: String
        @OptionGroup var places: BootPlaces

        func validate() throws { try requireName(name) }

        func run() throws {
            try places.layout.remove(name)
            print("removed \(name)")
        }
    }
}
