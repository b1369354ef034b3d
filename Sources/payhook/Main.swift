import ArgumentParser
import Foundation

/// payhook's command line (contract §1). Exit codes: 0 ok, 1 bad input or failed check, 2 usage.
struct Payhook: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "payhook",
        abstract: "Receives payment callbacks, verifies them, and queues each one durably, exactly once.",
        subcommands: [Serve.self, CheckConfig.self]
    )
}

@main
enum Main {
    static func main() {
        let command: any ParsableCommand
        do {
            command = try Payhook.parseAsRoot()
        } catch {
            // swift-argument-parser exits 64 (EX_USAGE) for usage errors; the contract says 2.
            let code = Payhook.exitCode(for: error)
            let message = Payhook.fullMessage(for: error)
            if code == .success {
                Output.out(message)
                exit(0)
            }
            Output.err(message)
            exit(2)
        }
        do {
            var runnable = command
            try runnable.run()
            exit(0)
        } catch let code as ExitCode {
            exit(code.rawValue)
        } catch {
            Output.err("payhook: \(error)")
            exit(1)
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
