import LStoreCompression
import LStoreStore
import LStoreTestSupport

/// A new store in `scratch`, a writer for it and a compressor at its settings: where the tests
/// that write objects one by one through the store's own API begin.
func storeForObjects(in scratch: TemporaryDirectory, blockSize: Int, compression: String) throws
    -> (store: Store, writer: StoreWriter, compressor: Compressor) {
    let store = try Store.initialize(at: scratch.sub("store"),
                                     config: StoreConfig(blockSize: blockSize, compression: try CompressionSpec(parsing: compression)))
    return (store, try StoreWriter(store: store), try Compressor(store.compression))
}
