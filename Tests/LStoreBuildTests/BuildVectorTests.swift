import Foundation
@testable import LStoreBuild
import LStoreStore
import LStoreTree
import LStoreTestSupport
import Testing

/// spec/build.md §9: the key text and key of a RUN step, as the spec gives them, against the code
/// that makes them.
struct BuildVectorTests {
    @Test func runStepKey() throws {
        let spec = try String(contentsOfFile: repositoryRoot + "/spec/build.md", encoding: .utf8)
        let section = try #require(spec.components(separatedBy: "## 9. Test vector").last)
        let blocks = section.components(separatedBy: "```")
        let text = String(try #require(blocks.count > 1 ? blocks[1] : nil).drop { $0 == "\n" })
        let key = try #require(section.range(of: #"sha256:[0-9a-f]{64}"#, options: .regularExpression).map { String(section[$0]) })

        let owner = Stage.Account(uid: 0, gid: 0, groups: [0], home: "/root")
        let environment = Stage.runEnvironment(arguments: [:], env: [], owner: owner, epoch: 1_700_000_000)
        let lines = Stage.runKeyLines(argv: ["/bin/sh", "-c", "echo hi > /x"], owner: owner, cwd: "/", environment: environment)
        let parent = try #require(Digest(hex: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"))
        let made = Stage.keyText(parent: parent, epoch: 1_700_000_000, keyword: "RUN", lines: lines)
        #expect(made == text)
        #expect("sha256:" + sha256(Array(made.utf8)).hex == key)
    }
}
