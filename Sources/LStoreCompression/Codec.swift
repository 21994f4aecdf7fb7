/// The codecs squashfs knows, with the numbers squashfs gives them in its superblock.
public enum Codec: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    case none = 0
    case gzip = 1
    case xz = 4
    case lz4 = 5
    case zstd = 6

    public var description: String {
        switch self {
        case .none: "none"
        case .gzip: "gzip"
        case .xz: "xz"
        case .lz4: "lz4"
        case .zstd: "zstd"
        }
    }

    /// The level a bare codec name (`zstd`, `gzip`, …) stands for: zstd 3, gzip 9, xz 6, lz4 0 (fast), none 0.
    public var defaultLevel: Int {
        switch self {
        case .none: 0
        case .gzip: 9
        case .xz: 6
        case .lz4: 0
        case .zstd: 3
        }
    }

    /// The levels this codec accepts: zstd 1...22, gzip 1...9, xz 0...9, lz4 0...1 (1 = hc), none 0...0.
    public var levels: ClosedRange<Int> {
        switch self {
        case .none: 0...0
        case .gzip: 1...9
        case .xz: 0...9
        case .lz4: 0...1
        case .zstd: 1...22
        }
    }
}

/// A codec and its level, as users write it: `zstd`, `zstd:19`, `lz4`, `lz4:hc`, `gzip:9`, `xz`, `none`.
///
/// `level` means: zstd 1...22 (default 3 in lstore's store, 15 in mksquashfs); gzip 1...9 (default 9);
/// xz preset 0...9 (default 6); lz4 0 = fast, 1 = high compression (`lz4:hc`); none 0.
public struct CompressionSpec: Hashable, Sendable, CustomStringConvertible {
    public var codec: Codec
    public var level: Int

    /// Takes the level as given; `Compressor.init` rejects a level outside `codec.levels`.
    public init(codec: Codec, level: Int) {
        self.codec = codec
        self.level = level
    }

    /// Parses `zstd:3`; throws `CompressionError.invalidSpec` naming the text on anything else.
    ///
    /// Accepted: `zstd`, `zstd:N` (1...22), `lz4`, `lz4:hc`, `gzip`, `gzip:N` (1...9), `xz`, `xz:N` (0...9),
    /// `none`. A bare name takes `Codec.defaultLevel`.
    public init(parsing text: String) throws {
        let invalid = CompressionError.invalidSpec(text)
        let name: Substring
        let argument: Substring?
        if let colon = text.firstIndex(of: ":") {
            name = text[..<colon]
            argument = text[text.index(after: colon)...]
        } else {
            name = text[...]
            argument = nil
        }
        guard let codec = Codec.allCases.first(where: { $0.description == name }) else { throw invalid }
        switch (codec, argument) {
        case (_, nil):
            self.init(codec: codec, level: codec.defaultLevel)
        case (.lz4, "hc"?):
            self.init(codec: .lz4, level: 1)
        case (.zstd, let number?), (.gzip, let number?), (.xz, let number?):
            // One or two ASCII digits: no sign, no spaces, nothing that could overflow.
            guard (1...2).contains(number.utf8.count), number.utf8.allSatisfy({ (0x30...0x39).contains($0) }),
                  let level = Int(number), codec.levels.contains(level)
            else { throw invalid }
            self.init(codec: codec, level: level)
        default:
            throw invalid
        }
    }

    /// The text `init(parsing:)` reads back: `zstd:3`, `lz4:hc`, `lz4`, `none`.
    ///
    /// A level outside `codec.levels` is written as `codec:level` too, which does not parse back.
    public var description: String {
        switch (codec, level) {
        case (.none, 0), (.lz4, 0): codec.description
        case (.lz4, 1): "lz4:hc"
        default: "\(codec):\(level)"
        }
    }

    /// What `init(parsing:)` accepts, for messages.
    public static let acceptedForms =
        "zstd, zstd:N (N 1...22, default 3), lz4, lz4:hc, gzip, gzip:N (N 1...9, default 9), "
        + "xz, xz:N (N 0...9, default 6), none"
}

public enum CompressionError: Error, Equatable, CustomStringConvertible {
    /// A compression spec that is not one of `CompressionSpec.acceptedForms`; carries the text as written.
    case invalidSpec(String)
    /// Input that is not a well-formed block of this codec; carries what the library said.
    case corrupt(Codec, String)
    /// Input that decompresses to more bytes than the output buffer holds.
    case tooLarge(Codec)
    /// The library failed for a reason other than the data (out of memory, input too large for it, …).
    case library(Codec, String)

    public var description: String {
        switch self {
        case .invalidSpec(let text):
            "invalid compression '\(text)': expected one of \(CompressionSpec.acceptedForms)"
        case .corrupt(let codec, let detail):
            "corrupt \(codec) block: \(detail)"
        case .tooLarge(let codec):
            "\(codec) block decompresses to more bytes than the space given for it"
        case .library(let codec, let detail):
            "\(codec) library error: \(detail)"
        }
    }
}
