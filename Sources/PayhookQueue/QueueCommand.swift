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

    static func run(_ request: Request, stop: QueueStopSignal) -> QueueCommandOutcome {
        // Opened as the take read it (Posix.openRegular): should the name have been replaced since, the command
        // gets neither what a symbolic link points to nor a FIFO that would block it.
        let input: Int32
        do {
            switch try Posix.openRegular(request.inputPath, limit: QueueDirectory.maximumFileSize) {
            case .file(let fd, _):
                input = fd
            case .refused(let reason):
                return QueueCommandOutcome(end: .notStarted("\(request.inputPath): \(reason)"), stderrTail: "")
            }
        } catch {
            return QueueCommandOutcome(
                end: .notStarted("open \(request.inputPath): \(Posix.describe(error.code))"), stderrTail: "")
        }
        defer { close(input) }
        // The command reads its stdin as an ordinary blocking file.
        Posix.clearNonBlocking(input)
        var exitFds: [Int32] = [0, 0]
        guard payhook_pipe2(&exitFds, O_CLOEXEC | O_NONBLOCK) == 0 else {
            return QueueCommandOutcome(end: .notStarted("pipe: \(Posix.describe(errno))"), stderrTail: "")
        }
        defer {
            close(exitFds[0])
            close(exitFds[1])
        }

        var pid: pid_t = 0
        var stderrRead: Int32 = -1
        // pipe2 sets FD_CLOEXEC atomically, so another worker's child spawned meanwhile never inherits an end.
        let spawnError: String? = { () -> String? in
            var errFds: [Int32] = [0, 0]
            guard payhook_pipe2(&errFds, O_CLOEXEC) == 0 else { return "pipe: \(Posix.describe(errno))" }
            defer { close(errFds[1]) }
            let code = spawn(request, stdin: input, stderr: errFds[1], pid: &pid)
            if code != 0 {
                close(errFds[0])
                return "\(request.shell): \(Posix.describe(code))"
            }
            stderrRead = errFds[0]
            return nil
        }()
        if let spawnError {
            return QueueCommandOutcome(end: .notStarted(spawnError), stderrTail: "")
        }
        Posix.setNonBlocking(stderrRead)

        // A helper thread blocks in waitid(2) with WNOWAIT: it learns of the exit without reaping, so the pid
        // stays the child's (a zombie) until this thread reaps it below. Every kill(2) happens before that
        // reaping, on this thread, and so can never hit a reused pid.
        let child = pid
        let exitWrite = exitFds[1]
        let waiter = Thread {
            var info = siginfo_t()
            while waitid(P_PID, id_t(child), &info, WEXITED | WNOWAIT) != 0 && errno == EINTR {}
            var one: UInt8 = 1
            _ = write(exitWrite, &one, 1)
        }
        waiter.start()

        var outcome = QueueCommandOutcome(end: .exited(0), stderrTail: "")
        var tail: [UInt8] = []
        var stderrOpen = true
        var stopSeen = false
        var hurrySeen = false
        var termSent = false
        var killSent = false
        let commandDeadline = request.timeout.map { Date().addingTimeInterval($0) }
        var graceDeadline: Date?
        var killDeadline: Date?

        func collect() {
            var buffer = [UInt8](repeating: 0, count: 4096)
            while stderrOpen {
                let count = buffer.withUnsafeMutableBytes { read(stderrRead, $0.baseAddress, $0.count) }
                if count < 0 {
                    if errno == EINTR { continue }
                    if errno == EAGAIN || errno == EWOULDBLOCK { return }
                    stderrOpen = false
                    return
                }
                if count == 0 {
                    stderrOpen = false
                    return
                }
                if request.forwardStderr {
                    buffer.withUnsafeBytes { chunk in
                        var offset = 0
                        while offset < count {
                            let written = write(2, chunk.baseAddress.map { $0 + offset }, count - offset)
                            if written <= 0 { break }
                            offset += written
                        }
                    }
                }
                tail.append(contentsOf: buffer[0..<count])
                if tail.count > 2 * request.tailLimit { tail.removeFirst(tail.count - request.tailLimit) }
            }
        }

        func signalGroup(_ signal: Int32) {
            // The child leads its own process group (POSIX_SPAWN_SETPGROUP), so this reaches what the shell
            // started too.
            _ = kill(-child, signal)
        }

        while true {
            var fds = [pollfd(fd: exitFds[0], events: Int16(POLLIN), revents: 0)]
            if stderrOpen { fds.append(pollfd(fd: stderrRead, events: Int16(POLLIN), revents: 0)) }
            if !stopSeen { fds.append(pollfd(fd: stop.stopDescriptor, events: Int16(POLLIN), revents: 0)) }
            if !hurrySeen { fds.append(pollfd(fd: stop.hurryDescriptor, events: Int16(POLLIN), revents: 0)) }
            var next: Date?
            for deadline in termSent ? [killSent ? nil : killDeadline] : [commandDeadline, graceDeadline] {
                if let deadline { next = min(next ?? deadline, deadline) }
            }
            _ = Posix.poll(&fds, timeout: Posix.milliseconds(next?.timeIntervalSinceNow))
            if stderrOpen { collect() }
            if fds[0].revents != 0 { break }
            if !stopSeen, stop.isTriggered {
                stopSeen = true
                graceDeadline = Date().addingTimeInterval(request.grace)
            }
            if !hurrySeen, stop.isHurried {
                hurrySeen = true
                graceDeadline = Date()
            }
            let now = Date()
            if !termSent, let commandDeadline, now >= commandDeadline {
                signalGroup(SIGTERM)
                termSent = true
                outcome.timedOut = true
                killDeadline = now.addingTimeInterval(killAfter)
            } else if !termSent, let graceDeadline, now >= graceDeadline {
                signalGroup(SIGTERM)
                termSent = true
                outcome.interrupted = true
                killDeadline = now.addingTimeInterval(hurrySeen ? 1 : killAfter)
            } else if termSent, !killSent, let killDeadline, now >= killDeadline {
                signalGroup(SIGKILL)
                killSent = true
            }
        }
        // The command has exited. What it wrote before is in the pipe; a background process it left behind may
        // still hold the pipe open, so read what is there and do not wait for end-of-file.
        collect()
        close(stderrRead)
        var status: Int32 = 0
        while waitpid(child, &status, 0) < 0 && errno == EINTR {}
        // wait(2)'s macros, through CPayhookShim.
        if payhook_wifexited(status) != 0 {
            outcome.end = .exited(payhook_wexitstatus(status))
        } else {
            outcome.end = .signaled(payhook_wtermsig(status))
        }
        if tail.count > request.tailLimit { tail.removeFirst(tail.count - request.tailLimit) }
        outcome.stderrTail = String(decoding: tail, as: UTF8.self)
        return outcome
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
