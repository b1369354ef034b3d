import Foundation
import PayhookTestSupport
import Testing

/// Several processes taking from one spool at once: each event is taken exactly once, none is lost.
@Suite(.timeLimit(.minutes(2)))
struct QueueRaceTests {
    @Test func fourProcessesRacingOverHundredsOfEventsTakeEachExactlyOnce() throws {
        let spool = try TestSpool()
        let ids = try spool.addMany(300)
        let binary = try payhookBinary()
        // Each racer is a shell loop of `payhook queue take` processes, appending the id it got to its own file,
        // until take finds new/ empty (exit 1).
        var racers: [Child] = []
        for index in 0..<4 {
            let script = "while \"$BIN\" queue take --spool \"$SPOOL\" --format id >> \"$OUT\"; do :; done"
            racers.append(try Child("/bin/sh", ["-c", script], environment: [
                "BIN": binary, "SPOOL": spool.root, "OUT": spool.base + "/taken.\(index)",
            ]))
        }
        for racer in racers { try racer.finish(within: 90) }

        var taken: [String] = []
        var perRacer: [Int] = []
        for index in 0..<4 {
            let text = (try? String(contentsOfFile: spool.base + "/taken.\(index)", encoding: .utf8)) ?? ""
            let mine = text.split(separator: "\n").map(String.init)
            perRacer.append(mine.count)
            taken += mine
        }
        #expect(taken.count == ids.count, "taken \(taken.count) of \(ids.count); per racer \(perRacer)")
        #expect(Set(taken).count == taken.count, "an event was taken twice")
        #expect(Set(taken) == Set(ids), "an event was lost")
        #expect(spool.list("new").isEmpty)
        #expect(spool.list("cur") == ids.map { "\($0).json" }.sorted())
        // It was a race: more than one process got events.
        #expect(perRacer.filter { $0 > 0 }.count >= 2, "per racer \(perRacer)")
    }
}
