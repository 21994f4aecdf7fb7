// libFuzzer harness for the recipe parser (`Recipe` and the word rules of spec/build.md §2),
// built with AddressSanitizer by recipe-parser.sh from Sources/LStoreBuild/Recipe.swift itself.
// Each input is parsed as a recipe; every instruction's arguments then go through the word
// splitter and the KEY=VALUE reader with a few variables set. Errors are the expected outcome for
// most inputs; a crash, a sanitizer report, a timeout or an out-of-memory is a bug.
import Foundation

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    guard let recipe = try? Recipe(file: "fuzz", text: bytes) else { return 0 }
    let words = Words(escape: recipe.escape, variables: ["A": "x y", "EMPTY": "", "PATH": "/bin"])
    for instruction in recipe.globalArguments + [recipe.from] + recipe.instructions {
        _ = try? words.words(instruction.arguments)
        _ = try? words.word(instruction.arguments)
        _ = try? words.pairs(instruction.arguments, legacy: true)
        for flag in instruction.flags { _ = try? words.word(flag.value) }
    }
    _ = Recipe.heredocMarker(String(decoding: bytes, as: UTF8.self))
    return 0
}
