import CPayhookShim
import Foundation
import Glibc
import PayhookSpoolFormat
import PayhookStore
import Synchronization

/// How one run of a consumer's command ended.
struct QueueCommandOutcome: Sendable, Equatable {
    enum End: Sendable, Equatable {
        /// The command exited with this status.
        case exited(Int32)
        /// A signal ended it.
        case signaled(Int32)
        /// It could not be started; the text says why.
        case notStarted(String)
    }

    var end: End
    /// The last bytes the command wrote to stderr.
    var stderrTail: String
    /// It ran longer than the command timeout and was sent SIGTERM.
    var timedOut = false
    /// The worker was stopping and the command was killed when the grace period ran out (or on a second
    /// signal): the event was not processed and goes back to new/ without counting an attempt.
    var interrupted = false

    var succeeded: Bool { end == .exited(0) }

    /// One line for people and for `last_error.reason`.
    func reason(timeout: Double?) -> String {
        let ended: String
        switch end {
        case .exited(let status): ended = "exit status \(status)"
        case .signaled(let signal): ended = "killed by signal \(signal)"
        case .notStarted(let why): ended = "could not start: \(why)"
        }
        if timedOut, let timeout { return "timed out after \(QueueTime.formatDuration(timeout)) (\(ended))" }
        return ended
    }
}

/// Runs a consumer's command: `/bin/sh -c CMD` with the event file on stdin, in its own process group, with
/// stderr passed through to ours while its last bytes are kept for the dead-letter record.
enum QueueCommandRunner {
    /// How long a command that got SIGTERM (timeout, or the stop grace ran out) has before SIGKILL.
    static let killAfter: Double = 5

    struct Request: Sendable {
        var shell: String
        var command: String
        var inputPath: String
        var environment: [String]
        var timeout: Double?
        var grace: Double
        var tailLimit: Int
        var forwardStderr: Bool
    }

    /// Runs the command to its end. What went wrong, including that it could not start, is in the outcome.
    static func run(_ request: Request, stop: QueueStopSignal) -> QueueCommandOutcome {
        do throws(NotStarted) {
            return try startAndWatch(request, stop: stop)
        } catch {
            return QueueCommandOutcome(end: .notStarted(error.why), stderrTail: "")
        }
    }

    /// Why the command could not be started, in the words of ``QueueCommandOutcome/End/notStarted(_:)``.
    private struct NotStarted: Error {
        var why: String
    }

    /// Opens the input, makes the pipes, spawns the command, then watches it until it exits and reaps it.
    private static func startAndWatch(
        _ request: Request, stop: QueueStopSignal
    ) throws(NotStarted) -> QueueCommandOutcome {
        let input = try openInput(request.inputPath)
        defer { close(input) }
        // The command reads its stdin as an ordinary blocking file.
        Posix.clearNonBlocking(input)
        let exitPipe = try makePipe(flags: O_CLOEXEC | O_NONBLOCK)
        defer {
            close(exitPipe.read)
            close(exitPipe.write)
        }
        let (child, stderrRead) = try spawnCommand(request, stdin: input)
        Posix.setNonBlocking(stderrRead)
        startExitWaiter(child: child, exitWrite: exitPipe.write)
        var watch = Watch(request: request, stop: stop, child: child, exitRead: exitPipe.read, stderrRead: stderrRead)
        watch.untilExit()
        return watch.finish()
    }

    /// The event file, as the command's stdin.
    private static func openInput(_ path: String) throws(NotStarted) -> Int32 {
        // Opened as the take read it (Posix.openRegular): should the name have been replaced since, the command
        // gets neither what a symbolic link points to nor a FIFO that would block it.
        let opened: SpoolOpenedFile
        do {
            opened = try Posix.openRegular(path, limit: QueueDirectory.maximumFileSize)
        } catch {
            throw NotStarted(why: "open \(path): \(Posix.describe(error.code))")
        }
        switch opened {
        case .file(let fd, _): return fd
        case .refused(let reason): throw NotStarted(why: "\(path): \(reason)")
        }
    }

    /// pipe2(2) with `flags`. Should it fail, that is why the command could not start.
    private static func makePipe(flags: Int32) throws(NotStarted) -> (read: Int32, write: Int32) {
        var fds: [Int32] = [0, 0]
        guard payhook_pipe2(&fds, flags) == 0 else { throw NotStarted(why: "pipe: \(Posix.describe(errno))") }
        return (fds[0], fds[1])
    }

    /// Spawns the command with its stderr into a new pipe; returns the child and the pipe's read end, which the
    /// caller closes. The write end is the child's alone once this returns.
    private static func spawnCommand(
        _ request: Request, stdin input: Int32
    ) throws(NotStarted) -> (child: pid_t, stderrRead: Int32) {
        // pipe2 sets FD_CLOEXEC atomically, so another worker's child spawned meanwhile never inherits an end.
        let errFds = try makePipe(flags: O_CLOEXEC)
        defer { close(errFds.write) }
        var pid: pid_t = 0
        let code = spawn(request, stdin: input, stderr: errFds.write, pid: &pid)
        if code != 0 {
            close(errFds.read)
            throw NotStarted(why: "\(request.shell): \(Posix.describe(code))")
        }
        return (pid, errFds.read)
    }

    /// A helper thread blocks in waitid(2) with WNOWAIT: it learns of the exit without reaping, so the pid stays
    /// the child's (a zombie) until the thread that runs the command reaps it (``Watch/finish()``). Every kill(2)
    /// happens before that reaping, on that thread, and so can never hit a reused pid. The thread tells of the
    /// exit by writing a byte to `exitWrite`.
    private static func startExitWaiter(child: pid_t, exitWrite: Int32) {
        let waiter = Thread {
            var info = siginfo_t()
            while waitid(P_PID, id_t(child), &info, WEXITED | WNOWAIT) != 0 && errno == EINTR {}
            var one: UInt8 = 1
            _ = write(exitWrite, &one, 1)
        }
        waiter.start()
    }

    /// waitpid(2) for the child, which has exited: this is what frees its pid.
    private static func reap(_ child: pid_t) -> QueueCommandOutcome.End {
        var status: Int32 = 0
        while waitpid(child, &status, 0) < 0 && errno == EINTR {}
        // wait(2)'s macros, through CPayhookShim.
        if payhook_wifexited(status) != 0 { return .exited(payhook_wexitstatus(status)) }
        return .signaled(payhook_wtermsig(status))
    }

    /// write(2) of all of `bytes` to `fd`, giving up at the first write that fails or writes nothing.
    private static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) {
        var offset = 0
        while offset < bytes.count {
            let written = write(fd, bytes.baseAddress.map { $0 + offset }, bytes.count - offset)
            if written <= 0 { break }
            offset += written
        }
    }

    /// A spawned command until it exits: one poll(2) loop over the exit pipe, the command's stderr and the two
    /// levels of the stop signal, and the deadlines at which it gets SIGTERM and then SIGKILL.
    private struct Watch {
        let request: Request
        let stop: QueueStopSignal
        let child: pid_t
        let exitRead: Int32
        let stderrRead: Int32
        let commandDeadline: Date?
        var outcome = QueueCommandOutcome(end: .exited(0), stderrTail: "")
        var tail: [UInt8] = []
        var stderrOpen = true
        var stopSeen = false
        var hurrySeen = false
        var termSent = false
        var killSent = false
        var graceDeadline: Date?
        var killDeadline: Date?

        init(request: Request, stop: QueueStopSignal, child: pid_t, exitRead: Int32, stderrRead: Int32) {
            self.request = request
            self.stop = stop
            self.child = child
            self.exitRead = exitRead
            self.stderrRead = stderrRead
            commandDeadline = request.timeout.map { Date().addingTimeInterval($0) }
        }

        /// Returns once the exit pipe is readable: the command has exited, and is not reaped yet.
        mutating func untilExit() {
            while true {
                var fds = pollSet()
                _ = Posix.poll(&fds, timeout: Posix.milliseconds(nextDeadline()?.timeIntervalSinceNow))
                if stderrOpen { collectStderr() }
                if fds[0].revents != 0 { return }
                if !stopSeen, stop.isTriggered { stopTriggered() }
                if !hurrySeen, stop.isHurried { hurryTriggered() }
                signalIfDue(now: Date())
            }
        }

        /// The exit pipe first (its revents end the loop), then what is still worth waking for.
        func pollSet() -> [pollfd] {
            var fds = [pollfd(fd: exitRead, events: Int16(POLLIN), revents: 0)]
            if stderrOpen { fds.append(pollfd(fd: stderrRead, events: Int16(POLLIN), revents: 0)) }
            if !stopSeen { fds.append(pollfd(fd: stop.stopDescriptor, events: Int16(POLLIN), revents: 0)) }
            if !hurrySeen { fds.append(pollfd(fd: stop.hurryDescriptor, events: Int16(POLLIN), revents: 0)) }
            return fds
        }

        /// The nearest deadline still to act on: before SIGTERM the timeout and the grace, after it the SIGKILL.
        func nextDeadline() -> Date? {
            var next: Date?
            for deadline in termSent ? [killSent ? nil : killDeadline] : [commandDeadline, graceDeadline] {
                if let deadline { next = min(next ?? deadline, deadline) }
            }
            return next
        }

        /// Reads what the command wrote to stderr, until the pipe has no more for now or reaches end-of-file.
        mutating func collectStderr() {
            var buffer = [UInt8](repeating: 0, count: 4096)
            while stderrOpen {
                let count = buffer.withUnsafeMutableBytes { read(stderrRead, $0.baseAddress, $0.count) }
                if count < 0 && errno == EINTR { continue }
                if count < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { return }
                if count <= 0 {
                    stderrOpen = false
                    return
                }
                stderrWritten(buffer[0..<count])
            }
        }

        /// One read of the command's stderr: passed through to ours when asked, and kept for the tail, trimmed
        /// only once it holds twice the limit so that the bytes are moved down rarely.
        mutating func stderrWritten(_ chunk: ArraySlice<UInt8>) {
            if request.forwardStderr { chunk.withUnsafeBytes { writeAll(2, $0) } }
            tail.append(contentsOf: chunk)
            if tail.count > 2 * request.tailLimit { tail.removeFirst(tail.count - request.tailLimit) }
        }

        /// The worker is stopping: the command has the grace period from now.
        mutating func stopTriggered() {
            stopSeen = true
            graceDeadline = Date().addingTimeInterval(request.grace)
        }

        /// The worker is told to stop now: the grace period is over.
        mutating func hurryTriggered() {
            hurrySeen = true
            graceDeadline = Date()
        }

        /// SIGTERM when the timeout or the grace runs out (the timeout first), SIGKILL when the time after
        /// SIGTERM does.
        mutating func signalIfDue(now: Date) {
            if !termSent, let commandDeadline, now >= commandDeadline {
                timeoutReached(now: now)
            } else if !termSent, let graceDeadline, now >= graceDeadline {
                graceRanOut(now: now)
            } else if termSent, !killSent, let killDeadline, now >= killDeadline {
                killDeadlineReached()
            }
        }

        mutating func timeoutReached(now: Date) {
            signalGroup(SIGTERM)
            termSent = true
            outcome.timedOut = true
            killDeadline = now.addingTimeInterval(killAfter)
        }

        mutating func graceRanOut(now: Date) {
            signalGroup(SIGTERM)
            termSent = true
            outcome.interrupted = true
            // Hurried, the worker waits for no command: SIGKILL follows a second later rather than `killAfter`.
            killDeadline = now.addingTimeInterval(hurrySeen ? 1 : killAfter)
        }

        mutating func killDeadlineReached() {
            signalGroup(SIGKILL)
            killSent = true
        }

        func signalGroup(_ signal: Int32) {
            // The child leads its own process group (POSIX_SPAWN_SETPGROUP), so this reaches what the shell
            // started too.
            _ = kill(-child, signal)
        }

        /// After the exit: the rest of stderr, then the reaping (after every kill), then the outcome.
        mutating func finish() -> QueueCommandOutcome {
            // The command has exited. What it wrote before is in the pipe; a background process it left behind may
            // still hold the pipe open, so read what is there and do not wait for end-of-file.
            collectStderr()
            close(stderrRead)
            outcome.end = reap(child)
            if tail.count > request.tailLimit { tail.removeFirst(tail.count - request.tailLimit) }
            outcome.stderrTail = String(decoding: tail, as: UTF8.self)
            return outcome
        }
    }

    /// posix_spawn(3) of `shell -c command`: stdin from the event file, stderr into the pipe, signal mask
    /// cleared and the stop signals back to their default actions (both are inherited across execve(2), and
    /// `consume` blocks SIGTERM/SIGINT to take them with sigwait), in a new process group so that a terminal's
    /// Ctrl-C reaches the worker, which then decides, and not the command directly. Returns 0 or an errno.
    private static func spawn(_ request: Request, stdin: Int32, stderr: Int32, pid: inout pid_t) -> Int32 {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, stdin, 0)
        posix_spawn_file_actions_adddup2(&actions, stderr, 2)
        // The command gets stdin, stdout and stderr, nothing else: every other descriptor is closed in the
        // child, whether or not it is close-on-exec. A process that embeds the consumer may hold descriptors
        // without the flag (Foundation's pipes, and the socket pair through which Foundation's Process learns
        // that a child exited); a command, or whatever it leaves running, that inherits one end keeps the other
        // end from ever seeing end-of-file. Where the C library lacks closefrom (ENOSYS), the close-on-exec
        // flags are all there is: this process opens its own descriptors with O_CLOEXEC.
        let closing = payhook_spawn_addclosefrom(&actions, 3)
        if closing != 0 && closing != ENOSYS { return closing }

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attributes, &empty)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in [SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGPIPE] { sigaddset(&defaults, signal) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setpgroup(&attributes, 0)
        posix_spawnattr_setflags(
            &attributes, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        let arguments = [request.shell, "-c", request.command]
        var argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        var envp: [UnsafeMutablePointer<CChar>?] = request.environment.map { strdup($0) } + [nil]
        defer {
            for pointer in argv { free(pointer) }
            for pointer in envp { free(pointer) }
        }
        return posix_spawn(&pid, request.shell, &actions, &attributes, &argv, &envp)
    }
}
