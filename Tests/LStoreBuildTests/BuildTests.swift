import Foundation
import LStoreTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// `lstore build` on the chain's Debian base, committed to a store: real RUN steps in the sandbox
/// (apt-get from Debian's mirror), COPY from recipe directories, the cache, failures and
/// interruptions, and what the host sees of it all.
@Suite(.serialized, .enabled(if: debianChain != nil && isRoot, "needs root and LSTORE_CHAIN (the Debian chain)"))
struct BuildTests {
    let scratch = TemporaryDirectory("build")
    var store: String { scratch.sub("store") }
    var recipes: String { scratch.sub("recipes") }

    init() throws {
        try lstoreOK(["init"], store: store)
        try lstoreOK(["commit", debianChain! + "/rootfs-base", "--ref", "base"], store: store)
    }

    /// Writes `files` (path → text) under the recipes directory.
    func write(_ files: [String: String]) throws {
        for (path, text) in files {
            let full = recipes + "/" + path
            try FileManager.default.createDirectory(atPath: (full as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try text.write(toFile: full, atomically: true, encoding: .utf8)
        }
    }

    func build(_ arguments: [String], environment: [String: String] = [:], storePath: String? = nil) throws -> ProcessResult {
        try lstore(["build"] + arguments, store: storePath ?? store, environment: environment)
    }

    func buildOK(_ arguments: [String], environment: [String: String] = [:], storePath: String? = nil) throws -> ProcessResult {
        let result = try build(arguments, environment: environment, storePath: storePath)
        guard result.succeeded else { throw TestFailure("lstore build \(arguments.joined(separator: " ")): \(result.stderr)") }
        return result
    }

    /// A checkout's manifest (Fixtures/manifest.py), by path.
    func tree(_ ref: String, storePath: String? = nil) throws -> [String: String] {
        let directory = scratch.sub("checkout-\(UUID().uuidString)")
        try lstoreOK(["checkout", ref, "--dir", directory], store: storePath ?? store)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var entries: [String: String] = [:]
        for line in try manifest(directory).split(separator: "\n") {
            let path = String(line.split(separator: " ", maxSplits: 1).first ?? "")
            entries[path] = String(line)
        }
        return entries
    }

    func read(_ ref: String, _ path: String) throws -> String {
        let directory = scratch.sub("read-\(UUID().uuidString)")
        try lstoreOK(["checkout", ref, "--dir", directory], store: store)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        return try String(contentsOfFile: directory + path, encoding: .utf8)
    }

    func json(_ text: String) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] ?? [:]
    }

    /// What the host's mount table holds, and the loop devices bound: a build must leave both as
    /// they were.
    func hostMounts() throws -> String {
        let mounts = try String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)
            .split(separator: "\n").map { $0.split(separator: " ").dropFirst(3).prefix(2).joined(separator: " ") }.sorted()
        let loops = (try? sh("losetup -a -n -O BACK-FILE 2>/dev/null || true")) ?? ""
        return mounts.joined(separator: "\n") + "\nloops:\n" + loops
    }

    var scratchLeft: [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: store + "/cache/scratch")) ?? []).filter { $0.hasPrefix("build-") }
    }

    @Test func packageCopyDeletionAndIsolation() throws {
        let canary = scratch.sub("canary")
        try "original\n".write(toFile: canary, atomically: true, encoding: .utf8)
        try write([
            "web/Lstorefile": """
                FROM base
                ENV GREETING="hello from a recipe"
                RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends hello >/dev/null
                RUN rm /etc/motd && echo "$GREETING" > /greeting && echo $$ > /run-pid \\
                    && mkdir -p \(scratch.path) && echo changed > \(canary) && ls /sys/class/net > /networks \\
                    && { mount -t tmpfs none /mnt 2>/dev/null && echo mount-allowed || echo mount-refused; } > /isolation \\
                    && { mknod /root/disk b 8 0 2>/dev/null && echo mknod-allowed || echo mknod-refused; } >> /isolation \\
                    && { (echo 1 > /proc/sys/vm/drop_caches) 2>/dev/null && echo sysctl-allowed || echo sysctl-refused; } >> /isolation \\
                    && tr '\\0' ' ' < /proc/1/cmdline >> /isolation
                COPY --chown=1000:100 --chmod=640 files/ /etc/web/
                COPY top.txt /srv/
                WORKDIR /srv/www
                LABEL description="a web layer"

                """,
            "web/files/site.conf": "listen 80\n",
            "web/files/sub/inner.conf": "inner\n",
            "web/top.txt": "top\n",
        ])
        let before = try hostMounts()
        let result = try buildOK([recipes + "/web"])
        let commit = result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(commit.count == 64, "\(result.stdout)")
        #expect(try hostMounts() == before, "the host's mount table and loop devices as they were")
        #expect(try String(contentsOfFile: canary, encoding: .utf8) == "original\n", "the host's file untouched")
        #expect(scratchLeft.isEmpty)

        let entries = try tree("web")
        #expect(entries["/usr/bin/hello"] != nil, "the package installed")
        #expect(entries["/etc/motd"] == nil, "the parent's file deleted")
        #expect(try tree("base")["/etc/motd"] != nil)
        #expect(entries["/etc/web/site.conf"]?.contains("uid=1000 gid=100") == true && entries["/etc/web/site.conf"]?.contains("mode=0640") == true,
                "\(entries["/etc/web/site.conf"] ?? "missing")")
        #expect(entries["/etc/web/sub/inner.conf"]?.contains("uid=1000 gid=100") == true)
        #expect(entries["/srv/top.txt"]?.contains("uid=0 gid=0") == true, "\(entries["/srv/top.txt"] ?? "missing")")
        #expect(entries["/srv/www"] != nil, "WORKDIR made")
        #expect(try read("web", "/greeting") == "hello from a recipe\n")
        #expect(try read("web", "\(canary)") == "changed\n", "the RUN wrote into its own layer")
        let pid = Int(try read("web", "/run-pid").trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
        #expect(pid > 0 && pid < 10, "a PID namespace of its own: \(pid)")
        #expect(try read("web", "/networks").contains("lo"))
        // The host's mounts, devices and kernel settings are out of reach; PID 1 is the sandbox's.
        let isolation = try read("web", "/isolation").split(separator: "\n").map(String.init)
        #expect(isolation.prefix(3) == ["mount-refused", "mknod-refused", "sysctl-refused"], "\(isolation)")
        #expect(isolation.last?.contains("build-sandbox") == true, "\(isolation)")

        // Each step is a commit with its instruction; the build commit on top records the recipe.
        let log = try lstoreOK(["log", "web"], store: store)
        for instruction in ["RUN apt-get update", "RUN rm /etc/motd", "COPY --chown=1000:100 --chmod=640 files/ /etc/web/",
                            "COPY top.txt /srv/", "WORKDIR /srv/www", "build web"] {
            #expect(log.contains(instruction), "lstore log shows \(instruction)")
        }
        let show = try lstoreOK(["show", "web"], store: store)
        #expect(show.contains("build-recipe sha256:") && show.contains("oci-labels {\"description\":\"a web layer\"}")
                && show.contains("oci-workdir [\"/srv/www\"]") && show.contains("oci-env [\"GREETING=hello from a recipe\"]"), "\(show)")
        let copyStep = try lstoreOK(["show", "web~2"], store: store)
        #expect(copyStep.contains("build-input sha256:") && copyStep.contains("build-cache sha256:"), "\(copyStep)")
        #expect(try lstore(["fsck"], store: store).succeeded)

        // Nothing changed: everything from the cache, nothing run, the ref where it was.
        let again = try buildOK([recipes + "/web", "--json"])
        let outcome = try json(again.stdout)
        #expect(outcome["upToDate"] as? Bool == true && outcome["stepsRun"] as? Int == 0 && outcome["stepsCached"] as? Int == 5,
                "\(again.stdout)")
        #expect(again.stderr.contains("up to date, nothing built"))
        // --network none: loopback only.
        try write(["offline/Lstorefile": "FROM base\nRUN ls /sys/class/net > /networks\n"])
        _ = try buildOK([recipes + "/offline", "--network", "none"])
        #expect(try read("offline", "/networks") == "lo\n")
    }

    @Test func treeOfRecipesBuiltParentsFirstAndOnlyWhatChanged() throws {
        try write([
            "os/Lstorefile": "FROM base\nRUN echo os > /layer-os\n",
            "desktop/Lstorefile": "FROM os\nCOPY desktop.conf /etc/\nRUN cat /etc/desktop.conf > /layer-desktop\n",
            "desktop/desktop.conf": "one\n",
            "gaming/Dockerfile": "FROM desktop\nRUN cat /layer-desktop > /layer-gaming\n",
            "development/Containerfile": "FROM desktop\nRUN echo dev > /layer-dev\n",
        ])
        let first = try buildOK([recipes, "--all", "--json"])
        let rows = try JSONSerialization.jsonObject(with: Data(first.stdout.utf8)) as? [[String: Any]] ?? []
        #expect(rows.map { $0["recipe"] as? String ?? "" } == ["os", "desktop", "development", "gaming"], "\(first.stdout)")
        #expect(try read("gaming", "/layer-gaming") == "one\n")
        #expect(try read("development", "/layer-os") == "os\n")

        var shown = try lstoreOK(["build", recipes, "--tree"], store: store)
        #expect(shown.split(separator: "\n").count == 4 && shown.components(separatedBy: "up to date").count == 5, "\(shown)")
        #expect(shown.hasPrefix("os (FROM base): up to date"), "\(shown)")

        // Nothing changed: nothing is run, in seconds.
        let started = Date()
        let cached = try buildOK([recipes, "--all", "--json"])
        let seconds = Date().timeIntervalSince(started)
        let again = try JSONSerialization.jsonObject(with: Data(cached.stdout.utf8)) as? [[String: Any]] ?? []
        #expect(again.allSatisfy { $0["stepsRun"] as? Int == 0 && $0["upToDate"] as? Bool == true }, "\(cached.stdout)")
        #expect(seconds < 10, "a cached rebuild of four recipes took \(seconds) s")

        // The middle recipe changes: it and its children are built again, its parent is not.
        try write(["desktop/desktop.conf": "two\n"])
        shown = try lstoreOK(["build", recipes, "--tree"], store: store)
        #expect(shown.contains("os (FROM base): up to date") && shown.contains("desktop: out of date (step 2")
                && shown.contains("gaming: out of date (its parent desktop is)"), "\(shown)")
        let rebuilt = try buildOK([recipes, "--all", "--json"])
        let third = try JSONSerialization.jsonObject(with: Data(rebuilt.stdout.utf8)) as? [[String: Any]] ?? []
        let run = Dictionary(uniqueKeysWithValues: third.map { ($0["recipe"] as? String ?? "", $0["stepsRun"] as? Int ?? -1) })
        #expect(run == ["os": 0, "desktop": 2, "gaming": 1, "development": 1], "\(rebuilt.stdout)")
        #expect(try read("gaming", "/layer-gaming") == "two\n")
    }

    @Test func failingRunMovesNothingAndLeavesNoMount() throws {
        try write(["broken/Lstorefile": "FROM base\nRUN echo first step > /ok\nRUN echo some output; echo the last line >&2; exit 3\n"])
        let before = try hostMounts()
        let result = try build([recipes + "/broken"])
        #expect(result.status == 1)
        let message = result.stderr.split(separator: "\n").filter { $0.hasPrefix("lstore:") }.first.map(String.init) ?? ""
        #expect(message.hasPrefix("lstore: \(recipes)/broken/Lstorefile:3: RUN: RUN echo some output") && message.contains("exited with status 3"),
                "\(result.stderr)")
        #expect(result.stderr.contains("  the last line"), "its last lines")
        #expect(try lstore(["show", "broken"], store: store).status != 0, "no ref moved")
        #expect(try hostMounts() == before)
        #expect(scratchLeft.isEmpty)
        #expect(try lstore(["fsck"], store: store).succeeded)
    }

    /// Starts a build whose RUN sleeps, waits for the sleep to run, and returns the build process.
    func startSleepingBuild(_ marker: String) throws -> Process {
        try write(["slow/Lstorefile": "FROM base\nRUN echo \(marker) && sleep 300\n"])
        let process = Process()
        process.executableURL = URL(fileURLWithPath: lstoreBinary)
        process.arguments = ["--store", store, "build", recipes + "/slow"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        for _ in 0..<400 {
            if (try? sh("pgrep -f 'slee[p] 300' || true"))?.isEmpty == false { break }
            usleep(50_000)
        }
        return process
    }

    @Test func interruptedBuildsLeaveNoMountBehind() throws {
        let before = try hostMounts()
        // SIGTERM: the build stops, cleans up and moves no ref.
        let terminated = try startSleepingBuild("terminated")
        kill(terminated.processIdentifier, SIGTERM)
        terminated.waitUntilExit()
        #expect(terminated.terminationStatus != 0)
        #expect((try sh("pgrep -f 'slee[p] 300' || true")).isEmpty, "the RUN's processes are gone")
        #expect(scratchLeft.isEmpty)
        #expect(try hostMounts() == before)

        // kill -9: the sandbox dies with it; the next build clears the scratch it left.
        let killed = try startSleepingBuild("killed")
        kill(killed.processIdentifier, SIGKILL)
        killed.waitUntilExit()
        var gone = false
        for _ in 0..<100 {
            if (try sh("pgrep -f 'slee[p] 300' || true")).isEmpty { gone = true; break }
            usleep(50_000)
        }
        #expect(gone, "the RUN's processes die with the build")
        #expect(!scratchLeft.isEmpty, "kill -9 leaves the scratch")
        try write(["slow/Lstorefile": "FROM base\nRUN echo done > /done\n"])
        _ = try buildOK([recipes + "/slow"])
        #expect(scratchLeft.isEmpty, "the next build removed it")
        #expect(try hostMounts() == before)
        #expect(try lstore(["fsck"], store: store).succeeded)
    }

    @Test func twoStoresGiveTheSameTree() throws {
        try write(["same/Lstorefile": """
            FROM base
            RUN printf 'same bytes\\n' > /etc/same && chmod 600 /etc/same && ln -s same /etc/same-link && mkdir -p /opt/same/dir \\
                && touch /opt/same/dir/file && rm -f /etc/motd
            COPY payload /opt/same/
            """, "same/payload": "payload\n"])
        let other = scratch.sub("other-store")
        try lstoreOK(["init"], store: other)
        try lstoreOK(["commit", debianChain! + "/rootfs-base", "--ref", "base"], store: other)
        _ = try buildOK([recipes + "/same"])
        // Later, from another copy of the recipe (its files newer), into another store.
        let copy = scratch.sub("copy")
        try sh("cp -r \(recipes)/same \(copy) && touch \(copy)/payload")
        _ = try buildOK([copy, "--ref", "same"], storePath: other)
        func treeID(_ storePath: String) throws -> String {
            let shown = try lstoreOK(["show", "same", "--json"], store: storePath)
            return (try json(shown)["tree"] as? String) ?? ""
        }
        #expect(try treeID(store) == treeID(other) && !(try treeID(store)).isEmpty)
        // SOURCE_DATE_EPOCH sets the times: another epoch, another tree; the same one again, the same.
        _ = try buildOK([recipes + "/same", "--ref", "epoch"], environment: ["SOURCE_DATE_EPOCH": "1700000000"])
        let epochTree = try json(try lstoreOK(["show", "epoch", "--json"], store: store))["tree"] as? String
        _ = try buildOK([copy, "--ref", "epoch"], environment: ["SOURCE_DATE_EPOCH": "1700000000"], storePath: other)
        #expect(epochTree == (try json(try lstoreOK(["show", "epoch", "--json"], store: other))["tree"] as? String))
        #expect(epochTree != (try treeID(store)))
        #expect(try lstoreOK(["show", "epoch"], store: store).contains("2023-11-14T22:13:20Z"))
    }

    @Test func ignoreFileSquashfsAndBuildArguments() throws {
        try write([
            "app/Lstorefile": """
                FROM base
                ARG FLAVOR=plain
                COPY . /opt/app/
                RUN echo $FLAVOR > /flavor
                ADD data.tar.gz /opt/data/
                USER nobody
                RUN test "$(id -u)" = 65534 && test "$HOME" = /nonexistent && touch /tmp/writable
                USER root

                """,
            "app/.dockerignore": "*.log\nsecret/\n",
            "app/keep.txt": "keep\n",
            "app/debug.log": "noise\n",
            "app/secret/key": "hidden\n",
        ])
        try sh("mkdir -p \(scratch.path)/data && echo inside > \(scratch.path)/data/inside.txt && chown 1234:5678 \(scratch.path)/data/inside.txt"
               + " && tar czf \(recipes)/app/data.tar.gz -C \(scratch.path)/data inside.txt")
        let image = scratch.sub("app.sfs")
        _ = try buildOK([recipes + "/app", "--squashfs", image, "--build-arg", "FLAVOR=spicy"])
        let entries = try tree("app")
        #expect(entries["/opt/app/keep.txt"] != nil && entries["/opt/app/debug.log"] == nil && entries["/opt/app/secret"] == nil,
                "\(entries.keys.filter { $0.hasPrefix("/opt/app") }.sorted())")
        #expect(try read("app", "/flavor") == "spicy\n")
        #expect(entries["/opt/data/inside.txt"]?.contains("uid=1234 gid=5678") == true, "ADD unpacks a local archive, owners kept")
        #expect(entries["/opt/app/data.tar.gz"] != nil, "COPY copies it as it is")
        #expect(try lstoreOK(["show", "app"], store: store).contains("build-arg FLAVOR=spicy"))
        // The image is the ref's tree, as the kernel mounts it.
        let mountPoint = scratch.sub("mnt")
        try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
        try sh("mount -t squashfs -o loop,ro \(image) \(mountPoint)")
        let mounted = try manifest(mountPoint, options: ["--mtime-seconds"])
        try sh("umount \(mountPoint)")
        let checkout = scratch.sub("app-checkout")
        try lstoreOK(["checkout", "app", "--dir", checkout], store: store)
        #expect(mounted == (try manifest(checkout, options: ["--mtime-seconds"])))
        // Bad input: one line naming the recipe, the line and what is wrong; nothing moves.
        try write(["bad/Lstorefile": "FROM base\nCOPY missing.txt /etc/\n"])
        let bad = try build([recipes + "/bad"])
        #expect(bad.status == 1 && bad.stderr.contains("bad/Lstorefile:2: COPY 'missing.txt': no such file in the recipe's directory"),
                "\(bad.stderr)")
        try write(["escape/Lstorefile": "FROM base\nCOPY ../app/keep.txt /etc/\n"])
        let escape = try build([recipes + "/escape"])
        #expect(escape.status == 1 && escape.stderr.contains("is outside the recipe's directory"), "\(escape.stderr)")
        try write(["nofrom/Lstorefile": "FROM no-such-layer\nRUN true\n"])
        #expect(try build([recipes + "/nofrom"]).stderr.contains("Lstorefile:1: FROM no-such-layer: no recipe, ref or commit of that name"))
    }
}

/// `FROM scratch`: an empty parent, a static busybox copied in, RUN in both forms; the mount points
/// the sandbox needed are not in the layer.
@Suite(.enabled(if: isRoot && FileManager.default.isExecutableFile(atPath: "/bin/busybox"), "needs root and busybox-static"))
struct BuildFromScratchTests {
    @Test func scratchBusyboxRun() throws {
        let scratch = TemporaryDirectory("build-scratch")
        let store = scratch.sub("store")
        try lstoreOK(["init"], store: store)
        let recipe = scratch.sub("tiny")
        try FileManager.default.createDirectory(atPath: recipe, withIntermediateDirectories: true)
        try sh("cp /bin/busybox \(recipe)/busybox")
        try """
            FROM scratch
            COPY busybox /bin/busybox
            RUN ["/bin/busybox", "sh", "-c", "/bin/busybox mkdir -p /x && echo exec-form > /x/y"]
            SHELL ["/bin/busybox", "sh", "-c"]
            RUN echo shell-form > /z
            """.write(toFile: recipe + "/Lstorefile", atomically: true, encoding: .utf8)
        _ = try lstoreOK(["build", recipe], store: store)
        let out = scratch.sub("out")
        try lstoreOK(["checkout", "tiny", "--dir", out], store: store)
        let entries = try sh("cd \(out) && find . | sort").split(separator: "\n").map(String.init)
        #expect(entries == [".", "./bin", "./bin/busybox", "./x", "./x/y", "./z"], "\(entries)")
        #expect(try String(contentsOfFile: out + "/x/y", encoding: .utf8) == "exec-form\n")
        #expect(try String(contentsOfFile: out + "/z", encoding: .utf8) == "shell-form\n")
    }
}

/// `FROM docker://` an image on the test registry, and `--push` of what was built.
@Suite(.serialized, .registryAvailable, .enabled(if: debianChain != nil && isRoot, "needs root and LSTORE_CHAIN (the Debian chain)"))
struct BuildRegistryTests {
    @Test func fromRegistryAndPush() throws {
        let scratch = TemporaryDirectory("build-registry")
        let store = scratch.sub("store")
        let environment = ["DOCKER_CONFIG": scratch.sub("docker")]
        try lstoreOK(["init"], store: store)
        try lstoreOK(["commit", debianChain! + "/rootfs-base", "--ref", "base"], store: store)
        let registry = try RegistryFixture(mode: "anonymous")
        defer { registry.stop() }
        _ = try lstoreOK(["push", "docker://\(registry.host)/steve/base:1", "base"], store: store, environment: environment)

        // Another store, with nothing in it: FROM pulls the image first.
        let builder = scratch.sub("builder")
        try lstoreOK(["init"], store: builder)
        let recipe = scratch.sub("recipes/gaming")
        try FileManager.default.createDirectory(atPath: recipe, withIntermediateDirectories: true)
        try "FROM docker://\(registry.host)/steve/base:1\nRUN echo steam > /etc/gaming\n"
            .write(toFile: recipe + "/Lstorefile", atomically: true, encoding: .utf8)
        let built = try lstore(["build", recipe, "--push", "docker://\(registry.host)/steve"], store: builder, environment: environment)
        #expect(built.succeeded, "\(built.stderr)")
        let commit = built.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let directory = scratch.sub("gaming")
        try lstoreOK(["checkout", "gaming", "--dir", directory], store: builder)
        #expect(try String(contentsOfFile: directory + "/etc/gaming", encoding: .utf8) == "steam\n")
        #expect(FileManager.default.fileExists(atPath: directory + "/etc/debian_version"))

        // Pushed as NAME:latest and NAME:COMMIT; a third store pulls it and has the same tree.
        for tag in ["latest", String(commit.prefix(12))] {
            let puller = scratch.sub("puller-\(tag)")
            try lstoreOK(["init"], store: puller)
            _ = try lstoreOK(["pull", "docker://\(registry.host)/steve/gaming:\(tag)", "--ref", "gaming"], store: puller, environment: environment)
            let pulled = scratch.sub("pulled-\(tag)")
            try lstoreOK(["checkout", "gaming", "--dir", pulled], store: puller)
            #expect(try manifest(pulled) == (try manifest(directory)), "gaming:\(tag)")
        }
        // The cache travels with the image: a store that pulled it builds the recipe from the cache.
        let puller = scratch.sub("puller-latest")
        let again = try lstore(["build", recipe, "--json"], store: puller, environment: environment)
        let outcome = try JSONSerialization.jsonObject(with: Data(again.stdout.utf8)) as? [String: Any] ?? [:]
        #expect(again.succeeded && outcome["stepsRun"] as? Int == 0 && outcome["stepsCached"] as? Int == 1, "\(again.stdout)\(again.stderr)")
    }
}
