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

    /// The level used when none is given.
    public var defaultLevel: Int {
        switch self {
        case .none, .lz4: 0
        case .gzip: 9
        case .xz: 6
        case .zstd: 3
        }
    }

    /// The levels the codec accepts.
    public var levels: ClosedRange<Int> {
        switch self {
        case .none: 0...0
        case .lz4: 0...1
        case .gzip: 1...9
        case .xz: 0...9
        case .zstd: 1...22
        }
    }
}

/// A codec and its level, as users write it: `zstd`, `zstd:19`, `lz4`, `lz4:hc`, `gzip:9`, `xz`, `none`.
///
/// `level` means: zstd 1...22; gzip 1...9 (default 9); xz preset 0...9 (default 6); lz4 0 = fast,
/// 1 = high compression (`lz4:hc`); none 0.
public struct CompressionSpec: Hashable, Sendable, CustomStringConvertible {
    public var codec: Codec
    public var level: Int

    public init(codec: Codec, level: Int) {
        precondition(codec.levels.contains(level), "level \(level) out of range for \(codec)")
        self.codec = codec
        self.level = level
    }

    /// Parses `zstd:3`; throws `CompressionError.invalidSpec` naming the text on anything else.
    public init(parsing text: String) throws {
        let parts = text.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
        guard let codec = Codec.allCases.first(where: { $0.description == parts[0] }) else {
            throw CompressionError.invalidSpec(text)
        }
        var level = codec.defaultLevel
        if parts.count == 2 {
            if codec == .lz4 {
                guard parts[1] == "hc" else { throw CompressionError.invalidSpec(text) }
                level = 1
            } else {
                guard let parsed = Int(parts[1]), codec.levels.contains(parsed), codec != .none else {
                    throw CompressionError.invalidSpec(text)
                }
                level = parsed
            }
        }
        self.init(codec: codec, level: level)
    }

    /// The text `init(parsing:)` reads back: `zstd:3`, `lz4:hc`, `lz4`, `none`.
    public var description: String {
        switch codec {
        case .none: "none"
        case .lz4: level == 1 ? "lz4:hc" : "lz4"
        default: "\(codec):\(level)"
        }
    }
}

public enum CompressionError: Error, Equatable, CustomStringConvertible {
    case invalidSpec(String)
    case corrupt(Codec, String)
    case tooLarge(Codec)
    case library(Codec, String)

    public var description: String {
        switch self {
        case .invalidSpec(let text):
            "invalid compression '\(text)': use zstd[:1-22], lz4[:hc], gzip[:1-9], xz[:0-9] or none"
        case .corrupt(let codec, let why): "corrupt \(codec) data: \(why)"
        case .tooLarge(let codec): "\(codec) data decompresses to more than expected"
        case .library(let codec, let why): "\(codec): \(why)"
        }
    }
}
