import Foundation
@testable import LStoreBuild
import LStoreTestSupport
import Testing

/// The recipe parser and the word rules, without a store.
struct RecipeTests {
    func parse(_ text: String) throws -> Recipe { try Recipe(file: "Lstorefile", text: Array(text.utf8)) }

    func refusal(_ text: String) -> String {
        do {
            _ = try parse(text)
            return "accepted"
        } catch {
            return "\(error)"
        }
    }

    @Test func instructionsContinuationsAndComments() throws {
        let recipe = try parse("""
            # syntax=docker/dockerfile:1
            ARG BASE=base
            FROM ${BASE}
            # a comment
            RUN apt-get update && \\
                # comments inside a continuation are left out
                apt-get install -y steam

            COPY --chown=1000:1000 --chmod=640 files/ /etc/
            run ["/bin/echo", "exec form"]
            ENV LANG=en_US.UTF-8
            """)
        #expect(recipe.globalArguments.map(\.arguments) == ["BASE=base"])
        #expect(recipe.from.arguments == "${BASE}" && recipe.from.line == 3)
        #expect(recipe.instructions.map(\.keyword) == ["RUN", "COPY", "RUN", "ENV"])
        #expect(recipe.instructions[0].arguments == "apt-get update && apt-get install -y steam")
        #expect(recipe.instructions[0].line == 5)
        #expect(recipe.instructions[1].flags.map(\.name) == ["chown", "chmod"])
        #expect(recipe.instructions[1].flags.map(\.value) == ["1000:1000", "640"])
        #expect(recipe.instructions[1].line == 9)
        #expect(recipe.instructions[2].json == ["/bin/echo", "exec form"])
        #expect(recipe.instructions[3].text == "ENV LANG=en_US.UTF-8")
    }

    @Test func refusedWithFileLineAndInstruction() {
        #expect(refusal("FROM base\nCMD [\"bash\"]\n") == "Lstorefile:2: CMD: not supported: a layer is booted, not run as a container")
        #expect(refusal("FROM base\n\nFROBNICATE x\n") == "Lstorefile:3: unknown instruction 'FROBNICATE'")
        #expect(refusal("FROM a\nRUN true\nFROM b\n") == "Lstorefile:3: FROM: a second FROM: multi-stage recipes are not supported")
        #expect(refusal("RUN true\n") == "Lstorefile:1: RUN before FROM: a recipe starts with FROM (ARG may come before it)")
        #expect(refusal("FROM a\nRUN cat <<EOF > /x\nhello\nEOF\n") == "Lstorefile:2: RUN: here-documents (<<EOF) are not supported")
        #expect(refusal("FROM a\nRUN\n") == "Lstorefile:2: RUN needs arguments")
        #expect(refusal("") == "Lstorefile: empty: a recipe starts with FROM")
        #expect(refusal("FROM a\nONBUILD RUN x\n").hasPrefix("Lstorefile:2: ONBUILD: not supported"))
        #expect(refusal("FROM a\nRUN [\"a\", 1]\n") == "Lstorefile:2: RUN: a JSON form holds strings only")
    }

    @Test func escapeDirective() throws {
        let recipe = try parse("# escape=`\nFROM base\nRUN echo a `\n  b\n")
        #expect(recipe.escape == "`")
        #expect(recipe.instructions[0].arguments == "echo a b")
    }

    @Test func wordsQuotesAndVariables() throws {
        let words = Words(variables: ["A": "x y", "EMPTY": ""])
        #expect(try words.words("a 'b c' \"d $A\" e\\ f") == ["a", "b c", "d x y", "e f"])
        #expect(try words.words("${A}") == ["x y"])
        #expect(try words.word("${MISSING:-default} ${EMPTY:-dflt} ${EMPTY-kept} ${A:+set} ${MISSING:+no}") == "default dflt  set ")
        #expect(try words.word("'$A' \\$A") == "$A $A")
        #expect(throws: Words.Failure.self) { try words.words("'open") }
        #expect(throws: Words.Failure.self) { try words.words("${A%%x}") }
        let pairs = try words.pairs("K1=v1 K2=\"two words\" K3=$A", legacy: true)
        #expect(pairs.map(\.key) == ["K1", "K2", "K3"])
        #expect(pairs.map(\.value) == ["v1", "two words", "x y"])
        let legacy = try words.pairs("KEY value with spaces", legacy: true)
        #expect(legacy.count == 1 && legacy[0].key == "KEY" && legacy[0].value == "value with spaces")
    }

    @Test func ignoreRules() {
        let rules = IgnoreRules(text: "# comment\n*.log\nbuild/\n!build/keep\n**/secret*\n/docs\n")
        #expect(rules.excludes(["a.log"]))
        #expect(!rules.excludes(["sub", "a.log"]), "*.log is for the top directory only")
        #expect(rules.excludes(["build", "out.o"]))
        #expect(!rules.excludes(["build", "keep"]))
        #expect(rules.excludes(["deep", "er", "secret.key"]))
        #expect(rules.excludes(["docs", "index.md"]))
        #expect(!rules.excludes(["files", "a.conf"]))
    }

    /// The recipes the README's CI example builds: read, parents first.
    @Test func exampleRecipesInheritanceOrder() throws {
        let set = try RecipeSet(top: repositoryRoot + "/examples/recipes", buildArguments: [:])
        #expect(set.entries.map(\.job.name) == ["base", "development", "gaming"])
        #expect(set.entries.map { $0.parent ?? "-" } == ["-", "base", "base"])
        #expect(set.entries[0].from == "docker://docker.io/library/debian:bookworm")
        let workflow = try String(contentsOfFile: repositoryRoot + "/examples/github-actions/build-layers.yml", encoding: .utf8)
        #expect(workflow.contains("lstore build examples/recipes --all --push"))
    }
}
