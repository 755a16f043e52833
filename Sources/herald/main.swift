import HeraldCLI

HeraldCommand.installEventLoopExecutor()
await HeraldCommand.runFromCommandLine()
