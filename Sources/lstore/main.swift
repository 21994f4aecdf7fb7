import LStoreCLI

LStoreCommand.run(Array(CommandLine.arguments.dropFirst()))
