// swift-tools-version:6.0
// lstore: immutable, reproducible, inheritable root filesystems.
//
// Dependencies point one way, down this list; each target uses only targets below it:
//   lstore                                    the command
//   LStoreCLI                                 arguments, progress, human and --json output
//   LStoreBuild                               recipes built into layers (uses the image, OCI and store modules)
//   LStoreBoot, LStoreSync, LStoreOCI         features: boot staging; moving layers between stores; container images in
//   LStoreImage                               between the store and images: checkout, commit of a source
//   LStoreStore, LStoreSquashFS, LStoreTar,   the store; images and tarballs, which know nothing of the store;
//   LStoreHTTP                                HTTP on libcurl (client) and HTTP/1.1 parsing (server)
//   LStoreTree, LStoreCompression             the tree model; the codecs
//   CLStoreSys and the C libraries from apt
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
        // One file per group of subcommands: arguments, progress, human and --json output, exit codes.
        .target(name: "LStoreCLI", dependencies: [
            "LStoreBuild", "LStoreBoot", "LStoreOCI", "LStoreImage", "LStoreStore", "LStoreSync", "LStoreTar", "LStoreSquashFS", "LStoreTree",
            "LStoreCompression", "CLStoreSys",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        // Recipes (spec/build.md): the parser, the build cache, RUN in namespaces over the parent's image
        // (the sandbox is C, in CLStoreSys), the overlay's upper directory read back as the child.
        .target(name: "LStoreBuild", dependencies: [
            "LStoreOCI", "LStoreImage", "LStoreStore", "LStoreTar", "LStoreTree", "CLStoreSys",
            .product(name: "Crypto", package: "swift-crypto"),
        ]),
        // Boot staging (spec/boot.md §10): a layer's image, its own kernel and initramfs, BLS and GRUB entries.
        .target(name: "LStoreBoot", dependencies: ["LStoreImage", "LStoreStore", "LStoreSquashFS", "LStoreTree", "CLStoreSys"]),
        // Moving layers between stores: the protocol (spec/protocol.md), its carriers (HTTP(S) through
        // LStoreHTTP, ssh through pipes), the server on POSIX sockets and OpenSSL, pull and push.
        .target(name: "LStoreSync", dependencies: ["LStoreStore", "LStoreHTTP", "LStoreTree", "COpenSSL"]),
        // Images: docker save archives, OCI layouts and archives, and registries (distribution-spec,
        // through LStoreHTTP) (spec/oci.md); documents and blobs checked against their digests,
        // layers decompressed and applied onto their parents.
        .target(name: "LStoreOCI", dependencies: [
            "LStoreStore", "LStoreHTTP", "LStoreTar", "LStoreTree", "CZlib", "CZstd",
            .product(name: "Crypto", package: "swift-crypto"),
        ]),
        // Store and images: the store as block source and fragment cache; directories, images, tarballs committed.
        .target(name: "LStoreImage", dependencies: ["LStoreStore", "LStoreSquashFS", "LStoreTar", "LStoreTree", "LStoreCompression"]),
        // The content-addressed store: objects (file, tree, commit), packs and indexes, refs, commits onto a ref, fsck, gc.
        .target(name: "LStoreStore", dependencies: [
            "LStoreTree", "LStoreCompression", "CXXHash", "CLStoreSys",
            .product(name: "Crypto", package: "swift-crypto"),
        ]),
        // SquashFS 4.0 images of a tree, written and read by our own code; file data through a
        // BlockSource protocol (the store, a directory, another image). Knows nothing of the store.
        .target(name: "LStoreSquashFS", dependencies: ["LStoreTree", "LStoreCompression"]),
        // Tarballs in and out (pax with xattrs), through libarchive.
        .target(name: "LStoreTar", dependencies: ["LStoreTree", "CArchive"]),
        // HTTP: a client on libcurl (proxies, redirects, keep-alive, HTTP/2, TLS) for any server, and
        // the HTTP/1.1 head and chunked-body parsing the server shares.
        .target(name: "LStoreHTTP", dependencies: ["CCurl"]),
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
        systemLibrary("CCurl", pkg: "libcurl", apt: "libcurl4-openssl-dev"),

        .target(name: "LStoreTestSupport", dependencies: ["LStoreTree"], path: "Tests/LStoreTestSupport"),
        .testTarget(name: "LStoreCompressionTests", dependencies: ["LStoreCompression"]),
        .testTarget(name: "LStoreTreeTests", dependencies: ["LStoreTree", "LStoreTestSupport"]),
        .testTarget(name: "LStoreStoreTests", dependencies: ["LStoreStore", "LStoreTestSupport"]),
        .testTarget(name: "LStoreSquashFSTests", dependencies: ["LStoreSquashFS", "LStoreTestSupport"]),
        .testTarget(name: "LStoreBootTests", dependencies: ["LStoreBoot", "LStoreTree", "LStoreTestSupport"]),
        .testTarget(name: "LStoreCLITests", dependencies: ["LStoreCLI", "LStoreTestSupport"]),
        .testTarget(name: "LStoreHTTPTests", dependencies: ["LStoreHTTP", "LStoreTestSupport"]),
        .testTarget(name: "LStoreOCITests", dependencies: ["LStoreOCI", "LStoreStore", "LStoreTestSupport"]),
        .testTarget(name: "LStoreBuildTests", dependencies: ["LStoreBuild", "LStoreStore", "LStoreTree", "LStoreTestSupport"]),
        .testTarget(name: "LStoreSyncTests", dependencies: ["LStoreSync", "LStoreStore", "LStoreTestSupport"]),
    ]
)
