import Foundation
@testable import LStoreOCI
import LStoreTestSupport
import Testing

/// `docker://` references as Docker names them, challenges as registries send them, and
/// credentials as the Docker configuration holds them.
struct RegistryReferenceTests {
    @Test func dockerHubNames() throws {
        let short = try RegistryReference(parsing: "docker://debian")
        #expect(short.registry == "docker.io" && short.repository == "library/debian" && short.tag == "latest")
        #expect(short.description == "docker://docker.io/library/debian:latest")
        #expect(short.apiHost == "registry-1.docker.io")
        let user = try RegistryReference(parsing: "steve/gaming:1")
        #expect(user.registry == "docker.io" && user.repository == "steve/gaming" && user.tag == "1")
        let index = try RegistryReference(parsing: "docker://index.docker.io/library/debian:bookworm")
        #expect(index.registry == "docker.io" && index.repository == "library/debian" && index.tag == "bookworm")
    }

    @Test func hostsPortsTagsDigests() throws {
        let hex = String(repeating: "0f", count: 32)
        let local = try RegistryReference(parsing: "docker://registry.local:5000/steve/gaming@sha256:\(hex)")
        #expect(local.registry == "registry.local:5000" && local.repository == "steve/gaming" && local.tag == nil)
        #expect(local.digest?.description == "sha256:\(hex)" && local.manifestReference == "sha256:\(hex)")
        #expect(!local.isLoopback)
        let both = try RegistryReference(parsing: "localhost:5000/a/b/c:v1.2_x@sha256:\(hex)")
        #expect(both.registry == "localhost:5000" && both.repository == "a/b/c" && both.tag == "v1.2_x" && both.isLoopback)
        #expect(try RegistryReference(parsing: "127.0.0.1:5000/x").isLoopback)
        #expect(try RegistryReference(parsing: "[::1]:5000/x").isLoopback)
        #expect(try RegistryReference(parsing: "localhost/x").registry == "localhost")
        for bad in ["docker://", "docker://Debian", "docker://a//b", "docker://x:-bad", "docker://x@sha256:12", "docker://a/-b",
                    "docker://host:99999/x", "docker://a/b_-c", "docker://" + String(repeating: "a", count: 256)] {
            #expect(throws: ImportError.self, "\(bad)") { try RegistryReference(parsing: bad) }
        }
    }

    /// Plain HTTP is tried after https only on loopback, or with --insecure.
    @Test func schemes() throws {
        var options = RegistryOptions()
        let remote = try RegistryReference(parsing: "registry.example:5000/steve/gaming")
        #expect(RegistrySession.baseCandidates(remote, options: options) == ["https://registry.example:5000"])
        #expect(RegistrySession.baseCandidates(try RegistryReference(parsing: "127.0.0.1:5000/x"), options: options)
                == ["https://127.0.0.1:5000", "http://127.0.0.1:5000"])
        #expect(RegistrySession.baseCandidates(try RegistryReference(parsing: "debian"), options: options) == ["https://registry-1.docker.io"])
        options.insecure = true
        #expect(RegistrySession.baseCandidates(remote, options: options) == ["https://registry.example:5000", "http://registry.example:5000"])
        options.dockerHubURL = "http://127.0.0.1:9/"
        #expect(RegistrySession.baseCandidates(try RegistryReference(parsing: "debian"), options: options) == ["http://127.0.0.1:9"])
    }

    @Test func challenges() {
        let (scheme, parameters) = RegistrySession.parseChallenge(
            #"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/debian:pull""#)
        #expect(scheme == "Bearer")
        #expect(parameters == ["realm": "https://auth.docker.io/token", "service": "registry.docker.io",
                               "scope": "repository:library/debian:pull"])
        let basic = RegistrySession.parseChallenge(#"Basic realm="Registry Realm""#)
        #expect(basic.0 == "Basic" && basic.1["realm"] == "Registry Realm")
        let escaped = RegistrySession.parseChallenge(#"Bearer realm="http://127.0.0.1:1/t\"x", service=s"#)
        #expect(escaped.1["realm"] == #"http://127.0.0.1:1/t"x"# && escaped.1["service"] == "s")
    }

    /// `auths` written by `store` and read back; a `credHelpers` program asked over its protocol.
    @Test func dockerConfigCredentials() throws {
        let scratch = TemporaryDirectory("docker-config")
        let config = DockerConfig(environment: ["DOCKER_CONFIG": scratch.sub("cfg"), "HOME": "/nonexistent"])
        let hub = try RegistryReference(parsing: "debian")
        let local = try RegistryReference(parsing: "127.0.0.1:5000/steve/gaming")
        #expect(try config.credentials(for: local) == nil)
        try config.store(RegistryCredentials(username: "steve", password: "pa:ss"), for: local.registry)
        try config.store(RegistryCredentials(username: "hub", password: "h"), for: hub.registry)
        #expect(try config.credentials(for: local) == RegistryCredentials(username: "steve", password: "pa:ss"))
        #expect(try config.credentials(for: hub) == RegistryCredentials(username: "hub", password: "h"))
        let text = try String(contentsOfFile: config.path, encoding: .utf8)
        #expect(text.contains("https://index.docker.io/v1/"))
        #expect(try sh("stat -c %a \(config.path)").trimmingCharacters(in: .whitespacesAndNewlines) == "600")
        #expect(try config.remove(registry: local.registry))
        #expect(try config.credentials(for: local) == nil)

        // A helper program on PATH, asked with the server on its standard input.
        let bin = scratch.sub("bin")
        try sh("""
            mkdir -p \(bin)
            cat > \(bin)/docker-credential-lstoretest <<'EOF'
            #!/bin/sh
            [ "$1" = get ] || exit 2
            read -r server
            [ "$server" = 127.0.0.1:5000 ] || { echo "credentials not found in native keychain"; exit 1; }
            printf '{"ServerURL":"%s","Username":"helper","Secret":"t0ken"}' "$server"
            EOF
            chmod +x \(bin)/docker-credential-lstoretest
            printf '{"credHelpers":{"127.0.0.1:5000":"lstoretest"},"credsStore":"lstoretest"}' > \(config.path)
            """)
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        setenv("PATH", "\(bin):\(path)", 1)
        defer { setenv("PATH", path, 1) }
        #expect(try config.credentials(for: local) == RegistryCredentials(username: "helper", password: "t0ken"))
        // credsStore is asked for the others; "not found" means none.
        #expect(try config.credentials(for: try RegistryReference(parsing: "127.0.0.1:6000/x")) == nil)
    }
}
