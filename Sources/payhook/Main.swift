import ArgumentParser
import Foundation
import PayhookConfig
import PayhookServer

/// payhook's command line (docs/contract.md §1). Exit codes: 0 ok, 1 bad input or failed check, 2 usage.
struct Payhook: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "payhook",
        abstract: "Receives payment callbacks, verifies them, and queues each one durably, exactly once.",
        version: "payhook \(PayhookVersion.description)",
        subcommands: [Serve.self, CheckConfig.self, Sign.self, Simulate.self, Verify.self, Queue.self, Database.self]
    )
}

@main
enum Main {
    static func main() {
        do {
            var command = try Payhook.parseAsRoot()
            try command.run()
            exit(0)
        } catch let code as ExitCode {
            exit(code.rawValue)
        } catch {
            // Parse errors, --help and --version arrive here. swift-argument-parser would exit 64
            // (EX_USAGE) for a usage error; docs/contract.md §1 says 2.
            let code = Payhook.exitCode(for: error)
            let message = Payhook.fullMessage(for: error)
            if code == .success {
                Output.out(message)
                exit(0)
            }
            Output.err(message)
            exit(code == .validationFailure ? 2 : code.rawValue)
        }
    }
}

/// Line-oriented output on the standard streams, flushed at once so pipes and tests see it.
enum Output {
    static func out(_ line: String) {
        FileHandle.standardOutput.write(Data((line + "\n").utf8))
    }

    static func err(_ line: String) {
        FileHandle.standardError.write(Data((line + "\n").utf8))
    }
}

extension ConfigFile {
    /// The config at `path`, or each of its problems on stderr as `error: file:line: message` and exit status 1:
    /// what every command that reads a config does with a broken one (docs/contract.md §1).
    static func loadOrExit(_ path: String) throws -> ConfigLoader.Loaded {
        do {
            return try load(path: path)
        } catch {
            for issue in error.issues { Output.err("error: \(issue)") }
            throw ExitCode(1)
        }
    }
}
