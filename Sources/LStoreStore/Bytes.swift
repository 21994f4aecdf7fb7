import LStoreTree

/// The store's reader of what `ByteWriter` wrote: too little input is corrupt store data.
typealias ByteReader = LStoreTree.ByteReader<StoreError>

extension StoreError: TruncatedInputError {
    public init(truncated what: String, at offset: Int, needed: Int) {
        self = .corrupt("\(what): truncated at byte \(offset)")
    }
}

extension LStoreTree.ByteReader where Failure == StoreError {
    /// The error for input that is not what it must be, at the current offset.
    func corrupt(_ problem: String) -> StoreError {
        .corrupt("\(what): \(problem) at byte \(offset)")
    }
}
