import Foundation
import PayhookTestSupport
import Testing

extension MeasuringSuites {
/// `payhook queue consume --exec CMD`, run as a real process: acknowledgement, retries with backoff, dead
/// letters, signals, kill -9, the one-worker lock, inotify waiting and concurrency. One of the measuring suites:
/// it times backoffs and stops, and counts an idle worker's CPU ticks.
@Suite(.timeLimit(.minutes(2)))
struct QueueConsumeTests {
    /// Starts `payhook queue consume --spool SPOOL --exec COMMAND EXTRA…` with $D set to a scratch folder.
    static func consume(_ spool: TestSpool, _ command: String, _ extra: [String] = []) throws -> Child {
        try FileManager.default.createDirectory(atPath: spool.base + "/d", withIntermediateDirectories: true)
        return try Child(
            try payhookBinary(),
            ["queue", "consume", "--spool", spool.root, "--exec", command] + extra,
            environment: ["D": spool.base + "/d"]
        )
    }

    static func lines(_ path: String) -> [String] {
        ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
    }

    @Test func eachEventIsPipedToTheCommandWithItsEnvironmentAndAcknowledged() throws {
        let spool = try TestSpool()
        let ids = try spool.addMany(3)
        let originals = try ids.map { try spool.read("new/\($0).json") }
        let command = """
            cat > "$D/$PAYHOOK_EVENT_ID.json"
            echo "$PAYHOOK_EVENT_ID $PAYHOOK_EVENT_ATTEMPT $PAYHOOK_EVENT_PATH $PAYHOOK_SPOOL" >> "$D/env"
            """
        let run = try Self.consume(spool, command, ["--drain"]).finish()
        #expect(run.status == 0, "\(run.stderr)")
        for (id, original) in zip(ids, originals) {
            #expect(try String(contentsOfFile: spool.base + "/d/\(id).json", encoding: .utf8) == original)
        }
        // Oldest first; first attempt; the path of the taken file; the spool.
        #expect(Self.lines(spool.base + "/d/env") == ids.map { "\($0) 1 \(spool.path("cur/\($0).json")) \(spool.root)" })
        #expect(spool.list("new").isEmpty)
        #expect(spool.list("cur").isEmpty)
        #expect(spool.list("ids") == ids.sorted())
        #expect(run.stderr.contains("acknowledged \(ids[0])"))
    }

    @Test func aFailureIsRetriedWithExponentialBackoffUntilItSucceeds() throws {
        let spool = try TestSpool()
        let id = try spool.add()
        let command = #"date +%s.%N >> "$D/times"; [ "$PAYHOOK_EVENT_ATTEMPT" -ge 3 ]"#
        let run = try Self.consume(spool, command, ["--drain", "--backoff", "100ms", "--max-attempts", "5"]).finish()
        #expect(run.status == 0, "\(run.stderr)")
        let times = Self.lines(spool.base + "/d/times").compactMap(Double.init)
        #expect(times.count == 3)
        if times.count == 3 {
            #expect(times[1] - times[0] >= 0.095)   // backoff
            #expect(times[2] - times[1] >= 0.195)   // doubled
        }
        #expect(spool.list("cur").isEmpty)
        #expect(spool.list("new").isEmpty)
        #expect(spool.list("attempts").isEmpty)
        #expect(run.stderr.contains("attempt 1 of \(id) failed (exit status 1); retrying in 100ms"))
        #expect(run.stderr.contains("attempt 2 of \(id) failed (exit status 1); retrying in 200ms"))
    }

    @Test func afterMaxAttemptsTheEventIsADeadLetterWithItsLastError() throws {
        let spool = try TestSpool()
        let bad = try spool.add(id: spool.makeID("b"), orderRef: "poison", receivedAt: "2026-11-22T01:00:00.000Z")
        let good = try spool.add(id: spool.makeID("a"), orderRef: "fine", receivedAt: "2026-11-22T02:00:00.000Z")
        let original = try spool.read("new/\(bad).json")
        let command = """
            grep -q poison || exit 0
            head -c 10000 /dev/zero | tr '\\0' x >&2
            echo " attempt $PAYHOOK_EVENT_ATTEMPT failed" >&2
            exit 7
            """
        let run = try Self.consume(spool, command, ["--drain", "--backoff", "20ms", "--max-attempts", "3"]).finish()
        #expect(run.status == 0, "\(run.stderr)")
        #expect(spool.list("dead") == ["\(bad).error.json", "\(bad).json"])
        #expect(try spool.read("dead/\(bad).json") == original)
        #expect(spool.list("cur").isEmpty)
        #expect(spool.list("new").isEmpty)
        #expect(spool.list("attempts").isEmpty)
        #expect(spool.list("ids") == [bad, good].sorted())

        let record = try #require(
            try JSONSerialization.jsonObject(with: Data(spool.read("dead/\(bad).error.json").utf8)) as? [String: Any])
        #expect(record["id"] as? String == bad)
        #expect(record["attempts"] as? Int == 3)
        #expect(QueueTimeCheck.isRFC3339(record["dead_at"]))
        let last = try #require(record["last_error"] as? [String: Any])
        #expect(last["exit_status"] as? Int == 7)
        #expect(last["reason"] as? String == "exit status 7")
        #expect(QueueTimeCheck.isRFC3339(last["at"]))
        let tail = try #require(last["stderr_tail"] as? String)
        #expect(tail.utf8.count == 4096)
        #expect(tail.hasSuffix("x attempt 3 failed\n"))
        #expect(run.stderr.contains("\(bad) moved to dead/ after 3 failed attempts; last: exit status 7"))

        let listed = try payhook("queue", "list", "--spool", spool.root, "--location", "dead", "--json")
        let items = try #require(try JSONSerialization.jsonObject(with: Data(listed.stdout.utf8)) as? [[String: Any]])
        #expect(items.count == 1)
        #expect(items.first?["location"] as? String == "dead")
        #expect(items.first?["attempts"] as? Int == 3)
        #expect(try payhook("queue", "revive", "--spool", spool.root, bad).status == 0)
        #expect(spool.list("new") == ["\(bad).json"])
        #expect(spool.list("dead").isEmpty)
    }

    @Test func aCommandTimeoutIsAFailedAttempt() throws {
        let spool = try TestSpool()
        let id = try spool.add()
        let run = try Self.consume(spool, "sleep 10", ["--drain", "--command-timeout", "200ms", "--max-attempts", "1"]).finish()
        #expect(run.status == 0, "\(run.stderr)")
        let record = try spool.read("dead/\(id).error.json")
        #expect(record.contains(#""reason" : "timed out after 200ms (killed by signal 15)""#))
    }

    @Test func sigtermLetsTheCommandInHandFinishThenExitsZero() throws {
        let spool = try TestSpool()
        let ids = try spool.addMany(3)
        // The command runs until the test says "go", after the worker has taken the signal.
        let command = #"touch "$D/started"; while [ ! -e "$D/go" ]; do sleep 0.02; done; cat > "$D/done.$PAYHOOK_EVENT_ID""#
        let worker = try Self.consume(spool, command)
        #expect(eventually { FileManager.default.fileExists(atPath: spool.base + "/d/started") })
        kill(worker.pid, SIGTERM)
        #expect(eventually { worker.stderr.contains("received SIGTERM: taking no new events") })
        #expect(worker.process.isRunning)
        _ = FileManager.default.createFile(atPath: spool.base + "/d/go", contents: nil)
        let run = try worker.finish(within: 10)
        #expect(run.status == 0, "\(run.stderr)")
        #expect(try String(contentsOfFile: spool.base + "/d/done.\(ids[0])", encoding: .utf8) == spool.read("ids/\(ids[0])"))
        #expect(spool.list("cur").isEmpty)
        #expect(spool.list("new") == ids.dropFirst().map { "\($0).json" })
    }

    @Test func sigtermDuringBackoffReturnsTheEventToNewWithItsAttemptCounted() throws {
        let spool = try TestSpool()
        let id = try spool.add()
        let worker = try Self.consume(spool, "exit 1", ["--backoff", "30s"])
        #expect(eventually { spool.exists("attempts/\(id).json") })
        let signalled = Date()
        kill(worker.pid, SIGTERM)
        let run = try worker.finish(within: 10)
        #expect(run.status == 0)
        #expect(Date().timeIntervalSince(signalled) < 15)   // well short of the 30 s backoff
        #expect(spool.list("new") == ["\(id).json"])
        #expect(try spool.read("attempts/\(id).json").contains(#""attempts" : 1"#))
        #expect(run.stderr.contains("stopping: \(id) returned to new/ after 1 failed attempt"))
    }

    @Test func aCommandOutlivingTheGraceIsKilledAndItsEventReturnedUncounted() throws {
        let spool = try TestSpool()
        let id = try spool.add()
        let worker = try Self.consume(spool, #"touch "$D/started"; sleep 30"#, ["--grace", "300ms"])
        #expect(eventually { FileManager.default.fileExists(atPath: spool.base + "/d/started") })
        kill(worker.pid, SIGTERM)
        let run = try worker.finish(within: 10)
        #expect(run.status == 0)
        #expect(spool.list("new") == ["\(id).json"])
        #expect(spool.list("cur").isEmpty)
        #expect(!spool.exists("attempts/\(id).json"))
    }

    @Test func killMinus9LosesNothingAndRequeueFindsTheEvent() throws {
        let spool = try TestSpool()
        let id = try spool.add()
        let worker = try Self.consume(spool, #"echo $$ > "$D/pid.tmp"; mv "$D/pid.tmp" "$D/pid"; exec sleep 30"#)
        #expect(eventually { FileManager.default.fileExists(atPath: spool.base + "/d/pid") })
        defer {
            if let text = try? String(contentsOfFile: spool.base + "/d/pid", encoding: .utf8),
                let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines))
            {
                kill(pid, SIGKILL)
            }
        }
        // While the worker lives, its event is locked: requeue leaves it alone however old.
        let early = try payhook("queue", "requeue", "--spool", spool.root, "--older-than", "0s")
        #expect(early.stdout == "requeued 0 events\n")
        #expect(early.stderr == "note: left \(id) in cur/: a running consume worker holds it\n")

        kill(worker.pid, SIGKILL)
        try worker.finish(within: 10)
        #expect(spool.list("cur") == ["\(id).json"])
        let requeue = try payhook("queue", "requeue", "--spool", spool.root, "--older-than", "0s")
        #expect(requeue.status == 0)
        #expect(requeue.stdout.hasSuffix("requeued 1 event\n"))
        #expect(spool.list("new") == ["\(id).json"])

        // The lock died with the worker too: a new one starts and finishes the event.
        let again = try Self.consume(spool, "cat > /dev/null", ["--drain"]).finish()
        #expect(again.status == 0, "\(again.stderr)")
        #expect(spool.list("new").isEmpty)
        #expect(spool.list("cur").isEmpty)
    }

    @Test func aSecondWorkerOnTheSameSpoolIsRefused() throws {
        let spool = try TestSpool()
        let first = try Self.consume(spool, "cat > /dev/null")
        #expect(eventually { ((try? spool.read(".consume.lock")) ?? "") == "\(first.pid)\n" })
        let second = try Self.consume(spool, "cat > /dev/null").finish()
        #expect(second.status == 1)
        #expect(second.stderr == "error: spool \(spool.root) already has a consume worker (pid \(first.pid), holding .consume.lock); run one per spool and raise its --concurrency instead\n")
        // The server's lock is not the consumer's business.
        #expect(!spool.exists(".lock"))
        kill(first.pid, SIGTERM)
        #expect(try first.finish(within: 10).status == 0)
    }

    @Test func anIdleWorkerWaitsOnInotifyAndPicksUpNewArrivals() throws {
        let spool = try TestSpool()
        let worker = try Self.consume(spool, #"cat > "$D/$PAYHOOK_EVENT_ID""#)
        usleep(400_000)
        let before = try #require(cpuTicks(worker.pid))
        usleep(600_000)
        let after = try #require(cpuTicks(worker.pid))
        #expect(after - before <= 2)
        let id = try spool.add()
        #expect(eventually(within: 5) { FileManager.default.fileExists(atPath: spool.base + "/d/\(id)") && spool.list("cur").isEmpty })
        // A nack'ed or requeued event comes back by rename (IN_MOVED_TO): picked up as well.
        let other = spool.makeID()
        try spool.write("cur/\(other).json", TestSpool.eventJSON(id: other))
        #expect(rename(spool.path("cur/\(other).json"), spool.path("new/\(other).json")) == 0)
        #expect(eventually(within: 5) { FileManager.default.fileExists(atPath: spool.base + "/d/\(other)") })
        kill(worker.pid, SIGTERM)
        #expect(try worker.finish(within: 10).status == 0)
    }

    /// The port a worker started with `--metrics-listen 127.0.0.1:0` prints on stdout.
    static func metricsPort(_ worker: Child) -> Int? {
        var port: Int?
        _ = eventually {
            port = worker.stdout.firstMatch(of: #/payhook queue consume metrics on 127\.0\.0\.1:(\d+)\n/#).flatMap { Int($0.1) }
            return port != nil || !worker.process.isRunning
        }
        return port
    }

    /// The samples of one scrape of `/metrics`, `name{labels}` → value.
    static func scrape(_ port: Int) throws -> [String: Double] {
        let reply = try #require(exchange(port: port, "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"))
        #expect(reply.status == 200)
        #expect(reply.header("Content-Type")?.hasPrefix("text/plain; version=0.0.4") == true)
        var samples: [String: Double] = [:]
        for line in reply.text.split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " ") else { continue }
            samples[String(line[..<space])] = Double(line[line.index(after: space)...])
        }
        return samples
    }

    /// `--metrics-listen`: the worker's counters, each worker's attempt, the last success, and the queue's oldest
    /// waiting and taken events, scraped from a running worker.
    @Test func metricsListenServesTheWorkersCountersAndTheQueueAge() throws {
        let spool = try TestSpool()
        _ = try spool.addMany(2)
        let poison = try spool.add(id: spool.makeID("b"), orderRef: "poison")
        let command = """
            input=$(cat)
            case "$input" in *poison*) exit 3 ;; esac
            case "$input" in *slow*) touch "$D/started"; while [ ! -e "$D/release" ]; do sleep 0.05; done ;; esac
            exit 0
            """
        let started = Date().timeIntervalSince1970
        let worker = try Self.consume(
            spool, command, ["--max-attempts", "2", "--backoff", "20ms", "--metrics-listen", "127.0.0.1:0"])
        let port = try #require(Self.metricsPort(worker), "\(worker.stderr)")
        var samples: [String: Double] = [:]
        #expect(try eventually(within: 35) {
            samples = try Self.scrape(port)
            // The counters are live; the queue's census may lag a slow one behind (QueueGauges).
            return samples["payhook_consume_processed_total"] == 2 && samples["payhook_consume_dead_lettered_total"] == 1
                && samples["payhook_queue_oldest_event_age_seconds{folder=\"new\"}"] == 0
        }, "\(samples)")
        #expect(spool.list("dead") == ["\(poison).error.json", "\(poison).json"])
        #expect(samples["payhook_consume_failed_attempts_total"] == 2)
        #expect(samples["payhook_consume_current_attempt{worker=\"0\"}"] == 0)
        let success = try #require(samples["payhook_consume_last_success_timestamp_seconds"])
        #expect(success >= started - 1 && success <= Date().timeIntervalSince1970 + 1)
        #expect(samples["payhook_queue_oldest_event_age_seconds{folder=\"new\"}"] == 0)
        #expect(samples["payhook_queue_oldest_event_age_seconds{folder=\"cur\"}"] == 0)
        #expect(samples.keys.contains { $0.hasPrefix("payhook_build_info{") })

        // An event that arrived an hour ago (its file written then) and whose command takes a while: while it
        // runs, the worker is on attempt 1 and cur/'s oldest event is an hour old.
        let slow = spool.makeID("c")
        let temporary = spool.path("tmp/\(slow).1")
        try Data(TestSpool.eventJSON(id: slow, orderRef: "slow").utf8).write(to: URL(fileURLWithPath: temporary))
        try FileManager.default.setAttributes([.modificationDate: Date().addingTimeInterval(-3600)], ofItemAtPath: temporary)
        #expect(link(temporary, spool.path("ids/\(slow)")) == 0)
        #expect(rename(temporary, spool.path("new/\(slow).json")) == 0)
        #expect(eventually { FileManager.default.fileExists(atPath: spool.base + "/d/started") })
        // A census may be reused for a while after a slow one (QueueGauges): scrape until it shows the take.
        var running: [String: Double] = [:]
        _ = try eventually(within: 35) {
            running = try Self.scrape(port)
            return running["payhook_queue_oldest_event_age_seconds{folder=\"cur\"}"] ?? 0 > 0
        }
        #expect(running["payhook_consume_current_attempt{worker=\"0\"}"] == 1)
        #expect((3599...3660).contains(running["payhook_queue_oldest_event_age_seconds{folder=\"cur\"}"] ?? -1), "\(running)")
        #expect(running["payhook_queue_oldest_event_age_seconds{folder=\"new\"}"] == 0)
        _ = FileManager.default.createFile(atPath: spool.base + "/d/release", contents: nil)
        var done: [String: Double] = [:]
        _ = try eventually(within: 35) {
            done = try Self.scrape(port)
            return done["payhook_consume_processed_total"] == 3 && done["payhook_queue_oldest_event_age_seconds{folder=\"cur\"}"] == 0
        }
        #expect(done["payhook_consume_processed_total"] == 3)
        #expect(done["payhook_consume_current_attempt{worker=\"0\"}"] == 0)
        #expect(done["payhook_queue_oldest_event_age_seconds{folder=\"cur\"}"] == 0)
        #expect((done["payhook_consume_last_success_timestamp_seconds"] ?? 0) >= success)

        kill(worker.pid, SIGTERM)
        let run = try worker.finish(within: 10)
        #expect(run.status == 0, "\(run.stderr)")
        // The listener is gone with the worker.
        #expect(exchange(port: port, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n") == nil)
    }

    /// `--log-format json`: every line the worker writes is a JSON object, the attempt and the worker a number.
    @Test func logFormatJSONWritesTypedLines() throws {
        struct Attempt: Decodable {
            let msg: String
            let level: String
            let attempt: Int
            let worker: Int
            let id: String
            enum CodingKeys: String, CodingKey {
                case msg, level, attempt, worker
                case id = "event.id"
            }
        }
        let spool = try TestSpool()
        let id = try spool.add()
        let command = #"[ "$PAYHOOK_EVENT_ATTEMPT" -ge 2 ]"#
        let run = try Self.consume(spool, command, ["--drain", "--backoff", "10ms", "--log-format", "json"]).finish()
        #expect(run.status == 0, "\(run.stderr)")
        let lines = run.stderr.split(separator: "\n").map(String.init)
        #expect(lines.count >= 5)
        for line in lines {
            let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            #expect(object?["ts"] is String && object?["msg"] is String, "not a JSON log line: \(line)")
        }
        let attempts = lines.filter { $0.contains("running attempt") }.compactMap { try? JSONDecoder().decode(Attempt.self, from: Data($0.utf8)) }
        #expect(attempts.map(\.attempt) == [1, 2])
        #expect(attempts.allSatisfy { $0.id == id && $0.worker == 0 && $0.level == "info" })
        #expect(lines.contains { $0.contains(#""msg":"attempt 1 of \#(id) failed (exit status 1); retrying in 10ms""#) })
    }

    /// The text format is the same logfmt as `payhook serve`'s; bad values are usage errors; a metrics address
    /// that cannot be bound is a one-sentence error, exit 1, before any event is taken.
    @Test func logFormatAndMetricsListenAreChecked() throws {
        let spool = try TestSpool()
        let id = try spool.add()
        let text = try Self.consume(spool, "true", ["--drain"]).finish()
        #expect(text.status == 0)
        #expect(text.stderr.contains(" level=info label=payhook.queue msg=\"acknowledged \(id)\" attempt=1 event.id=\(id) spool="), "\(text.stderr)")
        #expect(try payhook("queue", "consume", "--spool", spool.root, "--exec", "true", "--log-format", "xml").status == 2)
        let malformed = try payhook("queue", "consume", "--spool", spool.root, "--exec", "true", "--metrics-listen", "nowhere")
        #expect(malformed.status == 2)
        #expect(malformed.stderr.contains("--metrics-listen"), "\(malformed.stderr)")

        let first = try Self.consume(spool, "true", ["--metrics-listen", "127.0.0.1:0"])
        defer { kill(first.pid, SIGKILL) }
        let port = try #require(Self.metricsPort(first), "\(first.stderr)")
        let other = try TestSpool()
        let waiting = try other.add()
        let taken = try payhook("queue", "consume", "--spool", other.root, "--exec", "true", "--drain", "--metrics-listen", "127.0.0.1:\(port)")
        #expect(taken.status == 1)
        #expect(taken.stderr.hasPrefix("error: cannot serve metrics on 127.0.0.1:\(port): "), "\(taken.stderr)")
        #expect(taken.stderr.split(separator: "\n").count == 1, "\(taken.stderr)")
        #expect(other.list("new") == ["\(waiting).json"])
    }

    @Test func concurrencyRunsCommandsInParallel() throws {
        let spool = try TestSpool()
        _ = try spool.addMany(4)
        // Each command waits until two commands have started. One at a time, the first would give up after
        // 5 s and, with --max-attempts 1, land in dead/.
        let command = """
            touch "$D/running.$PAYHOOK_EVENT_ID"
            i=0
            while [ "$(ls "$D" | grep -c '^running\\.')" -lt 2 ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done
            [ "$(ls "$D" | grep -c '^running\\.')" -ge 2 ]
            """
        let run = try Self.consume(spool, command, ["--drain", "--concurrency", "2", "--max-attempts", "1"]).finish(within: 30)
        #expect(run.status == 0, "\(run.stderr)")
        #expect(!spool.exists("dead"))
        #expect(spool.list("cur").isEmpty)
        #expect(spool.list("new").isEmpty)
    }
}
}

enum QueueTimeCheck {
    static func isRFC3339(_ value: Any?) -> Bool {
        guard let text = value as? String else { return false }
        return text.range(of: #"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$"#, options: .regularExpression) != nil
    }
}
