import Foundation
import LStoreStore

/// The recipes under a directory (spec/build.md §8): every directory holding a recipe file is a
/// recipe, named by its path below the top (`recipes/gaming` is `gaming`) and building the ref of
/// that name; a `FROM` that names another recipe makes it a parent, built first.
public struct RecipeSet: Sendable {
    public struct Entry: Sendable {
        public var job: RecipeJob
        /// The recipe its FROM names, when it is one of the set.
        public var parent: String?
        /// What its FROM says.
        public var from: String

        public init(job: RecipeJob, parent: String? = nil, from: String = "") {
            self.job = job
            self.parent = parent
            self.from = from
        }
    }

    /// Parents before children; siblings by name.
    public private(set) var entries: [Entry] = []

    /// The recipe file of a directory: Lstorefile, Containerfile or Dockerfile.
    public static func recipeFile(in directory: String) -> String? {
        Recipe.fileNames.map { directory + "/" + $0 }.first { path in
            var isDirectory: ObjCBool = false
            return FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) && !isDirectory.boolValue
        }
    }

    /// One recipe: `path` is a recipe directory or a recipe file.
    public static func single(_ path: String, ref: String?) throws -> RecipeJob {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw BuildError("\(path): no such file or directory")
        }
        let file: String, directory: String
        if isDirectory.boolValue {
            guard let found = recipeFile(in: path) else {
                throw BuildError("\(path): no \(Recipe.fileNames.joined(separator: ", ")) (--all builds every recipe below it)")
            }
            (file, directory) = (found, path)
        } else {
            (file, directory) = (path, (path as NSString).deletingLastPathComponent.isEmpty ? "." : (path as NSString).deletingLastPathComponent)
        }
        let absolute = URL(fileURLWithPath: directory).standardizedFileURL.path
        let name = URL(fileURLWithPath: absolute).lastPathComponent
        let ref = ref ?? name
        try validateRefName(ref)
        return RecipeJob(name: ref, ref: ref, recipe: try Recipe(path: file), context: absolute)
    }

    /// Every recipe below `top`, ordered so that parents come first.
    public init(top: String, buildArguments: [String: String]) throws {
        let base = URL(fileURLWithPath: top).standardizedFileURL.path
        var found: [(name: String, directory: String, file: String)] = []
        func visit(_ directory: String, name: String) throws {
            if let file = Self.recipeFile(in: directory) {
                found.append((name.isEmpty ? URL(fileURLWithPath: directory).lastPathComponent : name, directory, file))
                return
            }
            let children = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
            for child in children.sorted() where !child.hasPrefix(".") {
                let path = directory + "/" + child
                var isDirectory: ObjCBool = false
                // Symlinked directories are not followed: the tree is what the directory holds.
                guard (try? FileManager.default.destinationOfSymbolicLink(atPath: path)) == nil,
                      FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue else { continue }
                try visit(path, name: name.isEmpty ? child : name + "/" + child)
            }
        }
        try visit(base, name: "")
        guard !found.isEmpty else { throw BuildError("\(top): no recipe below it (\(Recipe.fileNames.joined(separator: ", ")))") }
        var byName: [String: Entry] = [:]
        for item in found {
            try validateRefName(item.name)
            let display = item.file.hasPrefix(base + "/") ? top + "/" + item.file.dropFirst(base.count + 1) : item.file
            let recipe = try Recipe(path: item.file, display: String(display).replacingOccurrences(of: "//", with: "/"))
            let from = try Self.fromImage(recipe, buildArguments: buildArguments)
            byName[item.name] = Entry(job: RecipeJob(name: item.name, ref: item.name, recipe: recipe, context: item.directory),
                                      parent: nil, from: from)
        }
        for name in byName.keys where byName[byName[name]!.from] != nil && byName[name]!.from != name {
            byName[name]!.parent = byName[name]!.from
        }
        // Parents first: depth-first from the roots, children by name.
        var ordered: [Entry] = []
        var state: [String: Int] = [:]
        func place(_ name: String, chain: [String]) throws {
            if state[name] == 2 { return }
            guard state[name] != 1 else {
                throw BuildError("recipes inherit from each other: \((chain + [name]).joined(separator: " → "))")
            }
            state[name] = 1
            if let parent = byName[name]!.parent { try place(parent, chain: chain + [name]) }
            state[name] = 2
            ordered.append(byName[name]!)
        }
        for name in byName.keys.sorted() { try place(name, chain: []) }
        entries = ordered
    }

    /// What a recipe's FROM names, its ARGs with their defaults or the build's values.
    static func fromImage(_ recipe: Recipe, buildArguments: [String: String]) throws -> String {
        var globals: [String: String] = [:]
        do {
            for argument in recipe.globalArguments {
                for (key, value) in try Words(escape: recipe.escape, variables: globals).pairs(argument.arguments, legacy: false) {
                    globals[key] = buildArguments[key] ?? value ?? ""
                }
            }
            return try Words(escape: recipe.escape, variables: globals).words(recipe.from.arguments).first ?? ""
        } catch let error as Words.Failure {
            throw RecipeError(file: recipe.file, line: recipe.from.line, "FROM: \(error.message)")
        }
    }

    /// The children of `name` (nil: the roots), by name.
    public func children(of name: String?) -> [Entry] {
        entries.filter { $0.parent == name }.sorted { $0.job.name < $1.job.name }
    }
}
