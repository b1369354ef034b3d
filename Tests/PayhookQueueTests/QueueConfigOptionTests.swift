import Foundation
import PayhookTestSupport
import Testing

/// Every `payhook queue` command finds the spool from the config `payhook serve` runs with, by `--config FILE`
/// or `$PAYHOOK_CONFIG`, as well as by `--spool DIR` (docs/consumers.md). The database side of the same
/// option is PostgresQueueCLITests'.
@Suite struct QueueConfigOptionTests {
    @Test("list, show, take, nack, ack, requeue, consume, revive and gc all work from --config or $PAYHOOK_CONFIG on a spool")
    func everyCommandTakesTheConfig() throws {
        let spool = try TestSpool()
        let dir = try TemporaryDirectory()
        // A relative spool, as in a real config: relative to the config file's folder, not to where the command runs.
        try FileManager.default.createSymbolicLink(atPath: dir.file("queue"), withDestinationPath: spool.root)
        try dir.write("payhook.toml", "spool = \"queue\"\n[[unified]]\npath = \"/u\"\ndomain_code = \"demo\"\nsecret_env = \"HOME\"\n")
        let config = dir.file("payhook.toml")
        let fromEnvironment = ["PAYHOOK_CONFIG": config]
        func queue(_ arguments: [String], viaEnvironment: Bool) throws -> RunResult {
            let result = try Child(
                try payhookBinary(), ["queue"] + arguments + (viaEnvironment ? [] : ["--config", config]),
                environment: viaEnvironment ? fromEnvironment : [:]
            ).finish(within: 20)
            return result
        }
        let first = try spool.add(orderRef: "order-1")
        let second = try spool.add(orderRef: "order-2", receivedAt: "2026-11-22T03:00:00.000Z")

        for viaEnvironment in [false, true] {
            let list = try queue(["list", "--json"], viaEnvironment: viaEnvironment)
            #expect(list.status == 0, "\(list.stderr)")
            #expect(list.stdout.contains(first) && list.stdout.contains(second))
            let show = try queue(["show", first], viaEnvironment: viaEnvironment)
            #expect(show.status == 0 && show.stdout.contains("order_ref       order-1"), "\(show.stderr)")
        }
        let taken = try queue(["take", "--format", "id"], viaEnvironment: false)
        #expect(taken.stdout == "\(first)\n", "\(taken.stderr)")
        #expect(try queue(["nack", first], viaEnvironment: true).status == 0)
        let again = try queue(["take", "--format", "id"], viaEnvironment: true)
        #expect(again.stdout == "\(first)\n", "\(again.stderr)")
        #expect(try queue(["ack", first], viaEnvironment: false).status == 0)
        #expect(spool.list("cur").isEmpty && !spool.exists("new/\(first).json"))
        #expect(try queue(["requeue", "--older-than", "0"], viaEnvironment: true).status == 0)
        // The second event fails once and becomes a dead letter, then is revived.
        let consume = try queue(["consume", "--exec", "exit 3", "--max-attempts", "1", "--drain"], viaEnvironment: false)
        #expect(consume.status == 0, "\(consume.stderr)")
        #expect(spool.exists("dead/\(second).json"))
        #expect(try queue(["revive", second], viaEnvironment: true).status == 0)
        #expect(spool.exists("new/\(second).json"))
        let gc = try queue(["gc", "--dry-run"], viaEnvironment: false)
        #expect(gc.status == 0, "\(gc.stderr)")

        // Both ways at once could disagree: a usage error naming them. Without either, one too.
        let both = try Child(try payhookBinary(), ["queue", "list", "--spool", spool.root, "--config", config]).finish(within: 20)
        #expect(both.status == 2 && both.stderr.contains("give --spool DIR or --config FILE, not both"), "\(both.stderr)")
        let neither = try Child(try payhookBinary(), ["queue", "list"], environment: ["PAYHOOK_CONFIG": ""]).finish(within: 20)
        #expect(neither.status == 2 && neither.stderr.contains("missing --spool DIR or --config FILE (or $PAYHOOK_CONFIG)"), "\(neither.stderr)")
        // A config that is not valid is named with its problem, as serve would.
        try dir.write("broken.toml", "spool = 3\n")
        let broken = try Child(try payhookBinary(), ["queue", "list", "--config", dir.file("broken.toml")]).finish(within: 20)
        #expect(broken.status == 1 && broken.stderr.contains("\(dir.file("broken.toml")):1: spool must be a string"), "\(broken.stderr)")
    }
}
