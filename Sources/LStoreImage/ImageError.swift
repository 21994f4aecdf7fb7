/// What can go wrong between the store and an image or a layer's source, as the one line lstore prints.
public enum ImageError: Error, CustomStringConvertible, Equatable, Sendable {
    /// A tree's regular file names no stored data: the tree was not ingested.
    case noData(path: String)
    /// The image reader handed over a block still compressed, which the store cannot ingest.
    case compressedBlock(image: String)
    /// A layer's source that is neither a directory, a squashfs image nor a tarball.
    case unknownSource(String)

    public var description: String {
        switch self {
        case .noData(let path): "\(path): the tree names no data"
        case .compressedBlock(let image): "\(image): the image reader handed over a compressed block"
        case .unknownSource(let path): "\(path): neither a directory nor a tarball"
        }
    }
}
