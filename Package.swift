// swift-tools-version:6.0
// lstore: immutable, reproducible, inheritable root filesystems.
//
// Dependencies point one way:
//   lstore → LStoreCLI → LStoreSync, LStoreOCI → LStoreStore, LStoreTar, LStoreSquashFS → LStoreTree, LStoreCompression → C shims
import PackageDescription

/// A C library that Debian ships as `apt` package `apt`, found through pkg-config name `pkg`.
func systemLibrary(_ name: String, pkg: String, apt: String) -> Target {
    .systemLibrary(name: name, path: "Sources/\(name)", pkgConfig: pkg, providers: [.apt([apt])])
}

let package = Package(
    name: "lstore",
    products: [
        .executable(name: "lstore", targets: ["lstore"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
    ],
    targets: [
        // The command: a few lines that hand over to LStoreCLI.
        .executableTarget(name: "lstore", dependencies: ["LStoreCLI"]),
        // One file per subcommand, output formatting, exit codes.
        .target(name: "LStoreCLI", dependencies: [
            "LStoreStore", "LStoreSync", "LStoreOCI", "LStoreTar", "LStoreSquashFS", "LStoreTree", "LStoreCompression", "CLStoreSys",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        // The content-addressed store: objects (file, tree, commit), packs and indexes, refs, fsck, gc.
        .target(name: "LStoreStore", dependencies: [
            "LStoreTree", "LStoreCompression", "CXXHash", "CLStoreSys",
            .product(name: "Crypto", package: "swift-crypto"),
        ]),
        // Moving layers between stores: the protocol (spec/protocol.md), its HTTP(S) and ssh carriers
        // on POSIX sockets, OpenSSL and pipes, the server, pull and push.
        .target(name: "LStoreSync", dependencies: ["LStoreStore", "LStoreTree", "COpenSSL"]),
        // Images in: docker save archives, OCI layouts and archives (spec/oci.md); their documents,
        // blobs checked against their digests, layers decompressed and applied onto their parents.
        .target(name: "LStoreOCI", dependencies: [
            "LStoreStore", "LStoreTar", "LStoreTree", "CZlib", "CZstd",
            .product(name: "Crypto", package: "swift-crypto"),
        ]),
        // Tarballs in and out (pax with xattrs), through libarchive.
        .target(name: "LStoreTar", dependencies: ["LStoreTree", "CArchive"]),
        // SquashFS 4.0 images of a tree, written and read by our own code; file data through a
        // BlockSource protocol (the store, a directory, another image). Knows nothing of the store.
        .target(name: "LStoreSquashFS", dependencies: ["LStoreTree", "LStoreCompression"]),
        // The root filesystem model (byte names, all metadata, hardlinks), scanner and restorer.
        .target(name: "LStoreTree", dependencies: ["CLStoreSys"]),
        // One Compressor for every codec squashfs knows: zstd, lz4, gzip, xz, none; XXH3 checksums.
        .target(name: "LStoreCompression", dependencies: ["CZstd", "CLZ4", "CZlib", "CLZMA", "CXXHash"]),
        // What Glibc's Swift module lacks: xattrs, major/minor/makedev.
        .target(name: "CLStoreSys"),
        systemLibrary("CZstd", pkg: "libzstd", apt: "libzstd-dev"),
        systemLibrary("CLZ4", pkg: "liblz4", apt: "liblz4-dev"),
        systemLibrary("CXXHash", pkg: "libxxhash", apt: "libxxhash-dev"),
        systemLibrary("CZlib", pkg: "zlib", apt: "zlib1g-dev"),
        systemLibrary("CLZMA", pkg: "liblzma", apt: "liblzma-dev"),
        systemLibrary("CArchive", pkg: "libarchive", apt: "libarchive-dev"),
        systemLibrary("COpenSSL", pkg: "openssl", apt: "libssl-dev"),

        .target(name: "LStoreTestSupport", dependencies: ["LStoreTree"], path: "Tests/LStoreTestSupport"),
        .testTarget(name: "LStoreCompressionTests", dependencies: ["LStoreCompression"]),
        .testTarget(name: "LStoreTreeTests", dependencies: ["LStoreTree", "LStoreTestSupport"]),
        .testTarget(name: "LStoreStoreTests", dependencies: ["LStoreStore", "LStoreTestSupport"]),
        .testTarget(name: "LStoreSquashFSTests", dependencies: ["LStoreSquashFS", "LStoreTestSupport"]),
        .testTarget(name: "LStoreCLITests", dependencies: ["LStoreCLI", "LStoreTestSupport"]),
        .testTarget(name: "LStoreOCITests", dependencies: ["LStoreOCI", "LStoreStore", "LStoreTestSupport"]),
        .testTarget(name: "LStoreSyncTests", dependencies: ["LStoreSync", "LStoreStore", "LStoreTestSupport"]),
    ]
)
