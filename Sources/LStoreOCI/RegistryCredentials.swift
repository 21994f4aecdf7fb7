import Foundation
import LStoreTree
#if canImport(Glibc)
import Glibc
#endif

/// A user name and its password (or token) for a registry.
public struct RegistryCredentials: Sendable, Equatable {
    public var username: String
    public var password: String

    public init(username: String, password: String) {
        self.username = username
        self.password = password
    }

    /// `Authorization: Basic …` for these credentials.
    var basicAuthorization: String { "Basic " + Data("\(username):\(password)".utf8).base64EncodedString() }
}

/// Docker's client configuration, `$DOCKER_CONFIG/config.json` (default `~/.docker/config.json`),
/// as far as registries' credentials go: `auths` (base64 `user:password` per registry),
/// `credHelpers` (a `docker-credential-NAME` program per registry) and `credsStore` (one for every
/// registry). `lstore login` writes `auths` as `docker login` does without a store.
public struct DockerConfig: Sendable {
    public let path: String

    /// The file the environment names: `DOCKER_CONFIG`'s directory, else `$HOME/.docker`.
    public init(environment: [String: String] = ProcessInfo.processInfo.environment) {
        if let directory = environment["DOCKER_CONFIG"], !directory.isEmpty {
            path = directory + "/config.json"
        } else {
            path = (environment["HOME"] ?? NSHomeDirectory()) + "/.docker/config.json"
        }
    }

    public init(path: String) {
        self.path = path
    }

    /// The file's JSON object; empty when there is no file.
    func read() throws -> [String: Any] {
        guard access(path, F_OK) == 0 else { return [:] }
        guard let data = FileManager.default.contents(atPath: path) else { throw ImportError("\(path): cannot read") }
        guard data.count <= 4 << 20 else { throw ImportError("\(path): larger than 4 MiB") }
        guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw ImportError("\(path): not a JSON object")
        }
        return object
    }

    /// The credentials for `reference`'s registry: a helper's (`credHelpers`, else `credsStore`),
    /// else `auths`. Nil when the file names none.
    func credentials(for reference: RegistryReference) throws -> RegistryCredentials? {
        let object = try read()
        let keys = reference.credentialKeys
        let helpers = object["credHelpers"] as? [String: Any] ?? [:]
        if let helper = keys.lazy.compactMap({ helpers[$0] as? String }).first {
            return try Self.askHelper(helper, server: keys[0])
        }
        let auths = object["auths"] as? [String: Any] ?? [:]
        if let entry = keys.lazy.compactMap({ auths[$0] as? [String: Any] }).first, let encoded = entry["auth"] as? String,
           !encoded.isEmpty {
            guard let data = Data(base64Encoded: encoded), let text = String(data: data, encoding: .utf8),
                  let colon = text.firstIndex(of: ":") else {
                throw ImportError("\(path): the auth of \(reference.registry) is not base64 of user:password")
            }
            return RegistryCredentials(username: String(text[..<colon]), password: String(text[text.index(after: colon)...]))
        }
        if let store = object["credsStore"] as? String, !store.isEmpty {
            return try Self.askHelper(store, server: keys[0])
        }
        return nil
    }

    /// Runs `docker-credential-NAME get` with `server` on its standard input, as Docker's
    /// credential helper protocol says; nil when the helper has nothing for it.
    static func askHelper(_ name: String, server: String) throws -> RegistryCredentials? {
        guard !name.isEmpty, name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == "." }) else {
            throw ImportError("credential helper '\(name)': not a helper name")
        }
        let program = "docker-credential-" + name
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [program, "get"]
        let input = Pipe(), output = Pipe(), errors = Pipe()
        process.standardInput = input
        process.standardOutput = output
        process.standardError = errors
        do {
            try process.run()
        } catch {
            throw ImportError("\(program): cannot run: \(error.localizedDescription)")
        }
        input.fileHandleForWriting.write(Data(server.utf8))
        try? input.fileHandleForWriting.close()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        let message = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            let text = String(decoding: data + message, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            if text.localizedCaseInsensitiveContains("credentials not found") { return nil }
            throw ImportError("\(program) get \(server): exit \(process.terminationStatus): \(text.prefix(200))")
        }
        guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              let username = object["Username"] as? String, let secret = object["Secret"] as? String else {
            throw ImportError("\(program) get \(server): not a JSON object with Username and Secret")
        }
        return RegistryCredentials(username: username, password: secret)
    }

    /// Records `credentials` for `registry` in `auths` (the file made 0600, its other keys kept),
    /// as `docker login` does without a credential store.
    public func store(_ credentials: RegistryCredentials, for registry: String) throws {
        var object = try read()
        var auths = object["auths"] as? [String: Any] ?? [:]
        let key = registry == RegistryReference.dockerHub ? "https://index.docker.io/v1/" : registry
        auths[key] = ["auth": Data("\(credentials.username):\(credentials.password)".utf8).base64EncodedString()]
        object["auths"] = auths
        try write(object)
    }

    /// Forgets what `auths` holds for `registry`; false when it held nothing.
    public func remove(registry: String) throws -> Bool {
        var object = try read()
        var auths = object["auths"] as? [String: Any] ?? [:]
        let key = registry == RegistryReference.dockerHub ? "https://index.docker.io/v1/" : registry
        guard auths.removeValue(forKey: key) != nil else { return false }
        object["auths"] = auths
        try write(object)
        return true
    }

    private func write(_ object: [String: Any]) throws {
        let data = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
        let directory = (path as NSString).deletingLastPathComponent
        do {
            if !directory.isEmpty {
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                        attributes: [.posixPermissions: 0o700])
            }
            try writeFileAtomically(Array(data) + [10], to: path, mode: 0o600)
        } catch {
            throw ImportError("\(path): cannot write: \(error)")
        }
    }
}
