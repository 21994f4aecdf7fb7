import Foundation
import LStoreTestSupport
import Testing

/// The store's cache of compressed fragment blocks: a checkout that finds its fragments there
/// writes the very image it would have written without, a child layer finds most of its parent's,
/// and a damaged or missing cache only costs time.
@Suite(.serialized, .enabled(if: isRoot, "needs root: loop mounts"))
struct FragmentCacheTests {
    let scratch = TemporaryDirectory("fragcache")
    var store: String { scratch.sub("store") }
    var tree: String { scratch.sub("tree") }
    var cacheFile: String { store + "/cache/fragments" }

    init() throws {
        try lstoreOK(["init"], store: scratch.sub("store"))
        // 3000 small files of every length (text-like, so they compress), in 30 directories, and
        // a few files of several blocks whose tails become short blocks.
        try sh("""
            python3 - <<'PY'
            import os, random
            r = random.Random(7)
            root = "\(scratch.sub("tree"))"
            words = [bytes(r.choice(b"abcdefghij klmnop\\n") for _ in range(r.randrange(2, 12))) for _ in range(400)]
            def text(n):
                out = bytearray()
                while len(out) < n:
                    out += r.choice(words)
                return bytes(out[:n])
            for d in range(30):
                os.makedirs(f"{root}/d{d:02}")
                for f in range(100):
                    with open(f"{root}/d{d:02}/f{f:03}", "wb") as out:
                        out.write(text(r.randrange(1, 40000)))
            for b in range(4):
                with open(f"{root}/big{b}", "wb") as out:
                    out.write(text(131072 * (b + 1) + r.randrange(1, 131072)))
            PY
            """)
        try lstoreOK(["commit", tree, "--ref", "parent"], store: scratch.sub("store"))
    }

    struct Summary {
        var fragments: Int
        var cached: Int
        var ownBlocks = 0
    }

    func checkout(_ revision: String, to image: String, _ extra: [String] = []) throws -> Summary {
        let out = try lstoreOK(["checkout", revision, "--squashfs", image, "--json"] + extra, store: store)
        let json = try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any] ?? [:]
        return Summary(fragments: json["fragments"] as? Int ?? -1, cached: json["cachedFragments"] as? Int ?? -1,
                       ownBlocks: json["ownBlockFiles"] as? Int ?? -1)
    }

    func sameFile(_ a: String, _ b: String) throws -> Bool {
        try sh("cmp \(a) \(b) >/dev/null && echo same || echo differ") == "same\n"
    }

    func mountedEqualsTree(_ image: String) throws -> Bool {
        let mountPoint = scratch.sub("mnt-\(UUID().uuidString.prefix(8))")
        try sh("mkdir \(mountPoint) && mount -t squashfs -o loop,ro \(image) \(mountPoint)")
        defer { _ = try? sh("umount \(mountPoint)") }
        let options = ["--mtime-seconds"]
        return try manifest(mountPoint, options: options) == manifest(tree, options: options)
    }

    @Test func aCachedCheckoutIsTheSameImage() throws {
        let cold = try checkout("parent", to: scratch.sub("cold.sfs"))
        #expect(cold.fragments > 20 && cold.cached == 0, "first checkout compresses every fragment: \(cold)")
        let warm = try checkout("parent", to: scratch.sub("warm.sfs"))
        #expect(warm.cached == warm.fragments, "second checkout finds every fragment: \(warm)")
        let uncached = try checkout("parent", to: scratch.sub("uncached.sfs"), ["--no-fragment-cache"])
        #expect(uncached.cached == 0)
        #expect(try sameFile(scratch.sub("cold.sfs"), scratch.sub("warm.sfs")))
        #expect(try sameFile(scratch.sub("cold.sfs"), scratch.sub("uncached.sfs")))
        #expect(try mountedEqualsTree(scratch.sub("warm.sfs")))
        #expect(try sh("sqfsdiff -a \(scratch.sub("warm.sfs")) -b \(scratch.sub("uncached.sfs")) && echo none") == "none\n")
    }

    /// At the store's own settings, small files that compress to 4 KiB or more are copied as blocks
    /// of their own; at other settings, as for a plain directory, every small file is packed.
    @Test func onlyDirectCheckoutsStandSmallFilesAlone() throws {
        let direct = try checkout("parent", to: scratch.sub("direct.sfs"))
        #expect(direct.ownBlocks > 300 && direct.fragments > 10, "\(direct)")
        let other = try checkout("parent", to: scratch.sub("other.sfs"), ["--compression", "zstd:3"])
        #expect(other.ownBlocks == 0 && other.fragments > direct.fragments, "\(other)")
        let plain = try lstoreOK(["squashfs", tree, scratch.sub("plain.sfs"), "--json"], store: store)
        #expect(plain.contains("\"ownBlockFiles\" : 0"), "\(plain)")
        #expect(try mountedEqualsTree(scratch.sub("direct.sfs")))
        #expect(try mountedEqualsTree(scratch.sub("other.sfs")))
    }

    @Test func aChildLayerFindsMostOfItsParentsFragments() throws {
        _ = try checkout("parent", to: scratch.sub("parent.sfs"))
        // A package update: some files change length, some appear, some go.
        try sh("""
            cd \(tree) && for d in 03 11 19 27; do head -c 777 /dev/urandom | base64 >> d$d/f050; done
            mkdir d30 && for f in 1 2 3 4 5 6 7 8; do seq $f 9000 > d30/new$f; done
            rm d07/f010 d22/f090 d22/f091
            """)
        try lstoreOK(["commit", tree, "--ref", "child", "--parent", "parent"], store: store)
        let child = try checkout("child", to: scratch.sub("child.sfs"))
        #expect(child.cached * 10 >= child.fragments * 7, "most fragments come from the cache: \(child)")
        #expect(child.cached < child.fragments, "the changed ones do not: \(child)")
        _ = try checkout("child", to: scratch.sub("child-uncached.sfs"), ["--no-fragment-cache"])
        #expect(try sameFile(scratch.sub("child.sfs"), scratch.sub("child-uncached.sfs")))
        #expect(try mountedEqualsTree(scratch.sub("child.sfs")))
    }

    @Test func aDamagedCacheOnlyCostsTime() throws {
        _ = try checkout("parent", to: scratch.sub("reference.sfs"), ["--no-fragment-cache"])
        // Two checkouts fill the cache at once.
        try sh("""
            L=\(lstoreBinary); S=\(store)
            $L --store $S checkout parent --squashfs \(scratch.sub("p1.sfs")) 2>/dev/null &
            $L --store $S checkout parent --squashfs \(scratch.sub("p2.sfs")) 2>/dev/null &
            wait
            """)
        #expect(try sameFile(scratch.sub("reference.sfs"), scratch.sub("p1.sfs")))
        #expect(try sameFile(scratch.sub("reference.sfs"), scratch.sub("p2.sfs")))
        // Flip bytes in the middle and tear the last entry, as a crash would.
        try sh("""
            size=$(stat -c %s \(cacheFile))
            printf 'garbage' | dd of=\(cacheFile) bs=1 seek=$((size / 2)) conv=notrunc 2>/dev/null
            truncate -s $((size - 100)) \(cacheFile)
            """)
        let damaged = try checkout("parent", to: scratch.sub("damaged.sfs"))
        #expect(damaged.cached > 0 && damaged.cached < damaged.fragments, "damaged entries are misses: \(damaged)")
        #expect(try sameFile(scratch.sub("reference.sfs"), scratch.sub("damaged.sfs")))
        // The torn entry was cut off and the missing fragments saved again.
        let again = try checkout("parent", to: scratch.sub("again.sfs"))
        #expect(again.cached >= damaged.cached && again.cached > damaged.fragments / 2, "\(again)")
        #expect(try sameFile(scratch.sub("reference.sfs"), scratch.sub("again.sfs")))
        // A cache that is not a cache at all is ignored.
        try sh("head -c 100000 /dev/urandom > \(cacheFile)")
        let garbage = try checkout("parent", to: scratch.sub("garbage.sfs"))
        #expect(garbage.cached == 0)
        #expect(try sameFile(scratch.sub("reference.sfs"), scratch.sub("garbage.sfs")))
        // The store is untouched by all this; gc drops the cache.
        #expect(try lstore(["fsck"], store: store).succeeded)
        try lstoreOK(["gc"], store: store)
        #expect(!FileManager.default.fileExists(atPath: cacheFile))
    }
}
