import LStoreTree

/// What can go wrong in a store, each as the one line lstore prints.
public enum StoreError: Error, CustomStringConvertible, Equatable {
    /// Bytes that do not parse or do not hash to their name.
    case corrupt(String)
    /// An object a commit needs is absent.
    case missingObject(ObjectKind, Digest)
    case noStore(String)
    case storeExists(String)
    case invalidRefName(String, String)
    case unknownRef(String)
    case unknownRevision(String)
    /// A compare-and-swap on a ref lost: someone else moved it.
    case refMoved(name: String, expected: Digest?, actual: Digest?)
    case invalidConfig(String)
    case invalidArgument(String)

    public var description: String {
        switch self {
        case .corrupt(let message): "corrupt store data: \(message)"
        case .missingObject(let kind, let id): "missing \(kind) object \(id.hex)"
        case .noStore(let path): "\(path): not an lstore store (run `lstore init` first)"
        case .storeExists(let path): "\(path): a store already exists here"
        case .invalidRefName(let name, let why): "invalid ref name '\(name)': \(why)"
        case .unknownRef(let name): "no ref named '\(name)'"
        case .unknownRevision(let text): "'\(text)' is neither a ref nor a commit id in this store"
        case .refMoved(let name, let expected, let actual):
            "ref '\(name)' moved: expected \(expected?.short ?? "none") but it is \(actual?.short ?? "none"); nothing was changed"
        case .invalidConfig(let message): "invalid store config: \(message)"
        case .invalidArgument(let message): message
        }
    }
}
