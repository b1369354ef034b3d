import Foundation
import PayhookQueue
import PayhookStore
import PayhookTestSupport
import Testing

/// Spool entries that are not regular event files (a symbolic link to /dev/zero or to an event outside the
/// spool, a FIFO, a directory, a sparse file above the size limit) are moved to corrupt/ as they are, never
/// followed, read whole or waited on. Run through the `payhook` binary with a deadline, so that a command
/// that hangs on a FIFO or reads /dev/zero fails the test instead of stalling the run.
@Suite(.timeLimit(.minutes(2)))
struct QueueSpecialFileTests {
    /// The documented limit of a spool file the queue tools read (docs/consumers.md): 16 MiB.
    static let limit = 16 * 1024 * 1024
    /// A sparse file this large is never read: four times the limit.
    static let hugeSize = 4 * limit

    /// The hostile entries planted in one folder: id → the reason they must be quarantined with.
    struct Hostile {
        var reasons: [String: String] = [:]
        var zero = ""
        var outside = ""
        var fifo = ""
        var directory = ""
        var huge = ""
        /// The event file outside the spool that `outside` links to, and its bytes.
        var outsidePath = ""
        var outsideText = ""

        var ids: [String] { reasons.keys.sorted() }
    }

    /// Plants, in `folder` of the spool: a symbolic link to /dev/zero, a symbolic link to a valid event file
    /// outside the spool (same id), a FIFO, a directory and a sparse file above the limit, each named
    /// `<id>.json`; plus a directory `x.json` that is no event name at all.
    static func plant(_ spool: TestSpool, in folder: String) throws -> Hostile {
        var hostile = Hostile()
        let link = "it is a symbolic link, not a regular file"

        hostile.zero = spool.makeID("a")
        try spool.symlink("\(folder)/\(hostile.zero).json", to: "/dev/zero")
        hostile.reasons[hostile.zero] = link

        hostile.outside = spool.makeID("b")
        hostile.outsidePath = spool.base + "/outside-\(hostile.outside).json"
        hostile.outsideText = TestSpool.eventJSON(id: hostile.outside, orderRef: "outside-order")
        guard FileManager.default.createFile(atPath: hostile.outsidePath, contents: Data(hostile.outsideText.utf8)) else {
            throw TestFailure("create \(hostile.outsidePath)")
        }
        try spool.symlink("\(folder)/\(hostile.outside).json", to: hostile.outsidePath)
        hostile.reasons[hostile.outside] = link

        hostile.fifo = spool.makeID("c")
        try spool.fifo("\(folder)/\(hostile.fifo).json")
        hostile.reasons[hostile.fifo] = "it is a named pipe (FIFO), not a regular file"

        hostile.directory = spool.makeID("d")
        try FileManager.default.createDirectory(atPath: spool.path("\(folder)/\(hostile.directory).json"), withIntermediateDirectories: false)
        try spool.write("\(folder)/\(hostile.directory).json/inside", "kept")
        hostile.reasons[hostile.directory] = "it is a directory, not a regular file"

        hostile.huge = spool.makeID("e")
        try spool.sparse("\(folder)/\(hostile.huge).json", prefix: TestSpool.eventJSON(id: hostile.huge), size: hugeSize)
        hostile.reasons[hostile.huge] = "it is \(hugeSize) bytes, more than the \(limit) bytes a spool file may have"

        try FileManager.default.createDirectory(atPath: spool.path("\(folder)/x.json"), withIntermediateDirectories: false)
        return hostile
    }

    /// Every hostile entry is in corrupt/ under its own name, as the same kind of node (not a copy of what
    /// a link pointed to), gone from `folder`; the file outside the spool is where it was, unchanged.
    static func expectQuarantined(_ spool: TestSpool, _ hostile: Hostile, from folder: String) throws {
        for id in hostile.ids {
            #expect(!spool.exists("\(folder)/\(id).json") && spool.lstatKind("\(folder)/\(id).json") == nil, "\(id)")
        }
        #expect(spool.list("corrupt") == hostile.ids.map { "\($0).json" })
        #expect(spool.lstatKind("corrupt/\(hostile.zero).json") == S_IFLNK)
        #expect(spool.readLink("corrupt/\(hostile.zero).json") == "/dev/zero")
        #expect(spool.lstatKind("corrupt/\(hostile.outside).json") == S_IFLNK)
        #expect(spool.readLink("corrupt/\(hostile.outside).json") == hostile.outsidePath)
        #expect(spool.lstatKind("corrupt/\(hostile.fifo).json") == S_IFIFO)
        #expect(spool.lstatKind("corrupt/\(hostile.directory).json") == S_IFDIR)
        #expect(try spool.read("corrupt/\(hostile.directory).json/inside") == "kept")
        #expect(spool.lstatKind("corrupt/\(hostile.huge).json") == S_IFREG)
        #expect(try FileManager.default.attributesOfItem(atPath: spool.path("corrupt/\(hostile.huge).json"))[.size] as? Int == hugeSize)
        #expect(try String(contentsOfFile: hostile.outsidePath, encoding: .utf8) == hostile.outsideText)
        // A directory that is no event name is not the queue's business: left where it is.
        #expect(spool.lstatKind("new/x.json") == S_IFDIR || folder != "new")
    }

    /// The stderr line of the CLI for one quarantined entry.
    static func reported(_ folder: String, _ id: String, _ reason: String) -> String {
        "error: \(folder)/\(id).json is not a valid event (\(reason)); moved to corrupt/\(id).json, kept there for inspection"
    }

    @Test func listQuarantinesWhatIsNotARegularFileWithoutFollowingOrBlocking() throws {
        let spool = try TestSpool()
        let good = try spool.add()
        let hostile = try Self.plant(spool, in: "new")
        let run = try payhook("queue", "list", "--spool", spool.root, "--json", within: 15)
        #expect(run.status == 1)
        let items = try #require(try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [[String: Any]])
        #expect(items.compactMap { $0["id"] as? String } == [good])
        #expect(!run.stdout.contains("outside-order"))
        for (id, reason) in hostile.reasons {
            #expect(run.stderr.contains(Self.reported("new", id, reason) + "\n"), "\(run.stderr)")
        }
        try Self.expectQuarantined(spool, hostile, from: "new")
        #expect(spool.list("new") == ["\(good).json", "x.json"])
    }

    @Test func takeNeverClaimsOrPrintsWhatALinkPointsTo() throws {
        let spool = try TestSpool()
        let hostile = try Self.plant(spool, in: "new")
        let nothing = try payhook("queue", "take", "--spool", spool.root, within: 15)
        #expect(nothing.status == 1)
        #expect(nothing.stdout.isEmpty)
        #expect(nothing.stderr.hasSuffix("error: no event waiting in \(spool.root)/new/\n"))
        for (id, reason) in hostile.reasons {
            #expect(nothing.stderr.contains(Self.reported("new", id, reason) + "\n"), "\(nothing.stderr)")
        }
        #expect(spool.list("cur").isEmpty)
        try Self.expectQuarantined(spool, hostile, from: "new")

        let good = try spool.add()
        let take = try payhook("queue", "take", "--spool", spool.root, within: 15)
        #expect(take.status == 0)
        #expect(take.stdout == (try spool.read("cur/\(good).json")))
        #expect(spool.list("cur") == ["\(good).json"])
    }

    @Test func showReportsEachAsCorruptAndPrintsNothing() throws {
        let spool = try TestSpool()
        let hostile = try Self.plant(spool, in: "new")
        for (id, reason) in hostile.reasons {
            let run = try payhook("queue", "show", "--spool", spool.root, "--json", id, within: 15)
            #expect(run.status == 1, "\(id)")
            #expect(run.stdout.isEmpty, "\(id)")
            #expect(run.stderr == "error: new/\(id).json is not a valid event (\(reason)); moved to corrupt/\(id).json\n")
        }
        try Self.expectQuarantined(spool, hostile, from: "new")
    }

    @Test func consumeDeliversOnlyTheRegularEvents() throws {
        let spool = try TestSpool()
        let good = try spool.add()
        let original = try spool.read("new/\(good).json")
        let hostile = try Self.plant(spool, in: "new")
        let out = spool.base + "/delivered"
        let run = try Child(
            try payhookBinary(),
            ["queue", "consume", "--spool", spool.root, "--drain", "--exec", "cat >> \"$OUT\""],
            environment: ["OUT": out]
        ).finish(within: 20)
        #expect(run.status == 0, "\(run.stderr)")
        #expect(try String(contentsOfFile: out, encoding: .utf8) == original)
        for (id, reason) in hostile.reasons {
            #expect(run.stderr.contains("moved new/\(id).json to corrupt/\(id).json: \(reason)"), "\(run.stderr)")
        }
        #expect(spool.list("cur").isEmpty)
        try Self.expectQuarantined(spool, hostile, from: "new")
    }

    @Test func requeueSetsAsideWhatIsInCurWhateverItsAge() throws {
        let spool = try TestSpool()
        let hostile = try Self.plant(spool, in: "cur")
        let run = try payhook("queue", "requeue", "--spool", spool.root, "--older-than", "1h", within: 15)
        #expect(run.status == 1)
        #expect(run.stdout == "requeued 0 events\n")
        for (id, reason) in hostile.reasons {
            #expect(run.stderr.contains(Self.reported("cur", id, reason) + "\n"), "\(run.stderr)")
        }
        #expect(spool.list("new").isEmpty)
        try Self.expectQuarantined(spool, hostile, from: "cur")
    }

    @Test func reviveRefusesWhatIsNotARegularFileInDead() throws {
        let spool = try TestSpool()
        try FileManager.default.createDirectory(atPath: spool.path("dead"), withIntermediateDirectories: false)
        let hostile = try Self.plant(spool, in: "dead")
        for (id, reason) in hostile.reasons {
            let run = try payhook("queue", "revive", "--spool", spool.root, id, within: 15)
            #expect(run.status == 1, "\(id)")
            #expect(run.stderr == "error: dead/\(id).json is not a valid event (\(reason)); moved to corrupt/\(id).json\n")
        }
        #expect(spool.list("new").isEmpty)
        try Self.expectQuarantined(spool, hostile, from: "dead")
    }

    @Test func nackMovesNoLinkBackToNew() throws {
        let spool = try TestSpool()
        let id = spool.makeID()
        let outside = spool.base + "/outside.json"
        try TestSpool.eventJSON(id: id).write(toFile: outside, atomically: false, encoding: .utf8)
        try spool.symlink("cur/\(id).json", to: outside)
        let queue = try QueueDirectory(spool.root)
        #expect(throws: QueueError(
            .corrupt,
            "cur/\(id).json is not a valid event (it is a symbolic link, not a regular file); moved to corrupt/\(id).json"
        )) {
            try queue.nack(id)
        }
        #expect(spool.list("new").isEmpty)
        #expect(spool.lstatKind("corrupt/\(id).json") == S_IFLNK)
        #expect(try String(contentsOfFile: outside, encoding: .utf8) == TestSpool.eventJSON(id: id))
    }

    @Test func sidecarsThatAreNotRegularFilesAreSetAsideAndTheEventStillListed() throws {
        let spool = try TestSpool()
        let waiting = try spool.add()
        try FileManager.default.createDirectory(atPath: spool.path("attempts"), withIntermediateDirectories: false)
        try spool.fifo("attempts/\(waiting).json")
        let run = try payhook("queue", "list", "--spool", spool.root, "--json", within: 15)
        #expect(run.status == 1)
        let items = try #require(try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [[String: Any]])
        #expect(items.compactMap { $0["id"] as? String } == [waiting])
        #expect(run.stderr == "error: attempts/\(waiting).json is not an attempts record (it is a named pipe (FIFO), not a regular file); "
            + "moved to corrupt/\(waiting).json, kept there for inspection\n")
        #expect(spool.lstatKind("corrupt/\(waiting).json") == S_IFIFO)
        #expect(spool.list("attempts").isEmpty)
    }
}
