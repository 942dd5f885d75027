/* main_host.c: fleetnode-shim, the bridge firmware running as a host process.
 *
 * The firmware core is unchanged; this file is its board: the UART is a pseudo-terminal
 * (created here, slave path printed on stdout) or a tty given with --uart, and the CAN
 * bus is a stream of candump lines on stdin or --can-in, each injected as if the
 * controller had just received it. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include "candump.h"
#include "fw.h"
#include "hal_host.h"

#define EOF_DRAIN_US 2000000u /* after input ends, how long to wait for output to drain */
#define SETTLE_US 50000u      /* quiet time before trusting an empty pty input queue */
#define ATTACH_POLL_MS 20     /* while no host has the pty open, how often to look again */

static const char USAGE[] =
    "usage: fleetnode-shim [options]\n"
    "Listen-only CAN-to-SLCAN bridge firmware, host build.\n"
    "  --uart PATH        use this tty as the UART (default: create a pty, print its slave path)\n"
    "  --can-in PATH      read candump lines from this file or FIFO (default: stdin)\n"
    "  --exit-on-eof      exit once the CAN input ends and queued output is written\n"
    "  --uart-bps N       model a UART at N bit/s (8N1); 0 = unlimited (default)\n"
    "  --clock-start MS   millis() value at start (default 0)\n"
    "  --serial XXXX      N reply, 4 alphanumerics (default A123)\n"
    "  --bitrate-index N  S index used if the host opens without S (default 6: 500 kbit/s)\n"
    "  -h, --help         this text\n"
    "Signals: SIGTERM/SIGINT exit cleanly; SIGUSR1 prints the counters on stderr.\n";

static volatile sig_atomic_t g_stop;
static volatile sig_atomic_t g_dump;
static int g_wake[2] = {-1, -1};

static void on_signal(int sig)
{
    int saved = errno;
    if (sig == SIGUSR1) {
        g_dump = 1;
    } else {
        g_stop = 1;
    }
    if (g_wake[1] >= 0) {
        ssize_t ignored = write(g_wake[1], "x", 1);
        (void)ignored;
    }
    errno = saved;
}

typedef struct {
    const char *uart_path;
    const char *can_in_path;
    int exit_on_eof;
    unsigned long uart_bps;
    unsigned long clock_start;
    fw_config_t cfg;
} options_t;

static int parse_ulong(const char *s, unsigned long max, unsigned long *out)
{
    char *end = NULL;
    if (s == NULL || *s == '\0' || *s == '-') {
        return 0;
    }
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno != 0 || *end != '\0' || v > max) {
        return 0;
    }
    *out = v;
    return 1;
}

static int parse_args(int argc, char **argv, options_t *o)
{
    memset(o, 0, sizeof *o);
    fw_config_default(&o->cfg);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        unsigned long n;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(USAGE, stdout);
            exit(0);
        } else if (strcmp(a, "--exit-on-eof") == 0) {
            o->exit_on_eof = 1;
            continue;
        } else if (v == NULL) {
            fprintf(stderr, "fleetnode-shim: %s: unknown option or missing value\n", a);
            return 0;
        } else if (strcmp(a, "--uart") == 0) {
            o->uart_path = v;
        } else if (strcmp(a, "--can-in") == 0) {
            o->can_in_path = v;
        } else if (strcmp(a, "--uart-bps") == 0 && parse_ulong(v, 100000000ul, &n)) {
            o->uart_bps = n;
        } else if (strcmp(a, "--clock-start") == 0 && parse_ulong(v, 0xFFFFFFFFul, &n)) {
            o->clock_start = n;
        } else if (strcmp(a, "--bitrate-index") == 0 && parse_ulong(v, 8ul, &n)) {
            o->cfg.bitrate_index = (uint8_t)n;
        } else if (strcmp(a, "--serial") == 0 && strlen(v) == 4u) {
            memcpy(o->cfg.serial, v, 5u);
        } else {
            fprintf(stderr, "fleetnode-shim: %s %s: invalid\n", a, v);
            return 0;
        }
        i++;
    }
    return 1;
}

static int set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    return fl >= 0 && fcntl(fd, F_SETFL, fl | O_NONBLOCK) == 0;
}

/* Raw 8-bit line: no echo (our own output would come back as commands), no CR/NL
 * translation (CR terminates SLCAN commands), no signals from control characters. */
static int make_raw(int fd)
{
    struct termios t;
    if (tcgetattr(fd, &t) != 0) {
        return 0;
    }
    t.c_iflag &= ~(tcflag_t)(IGNBRK | BRKINT | PARMRK | ISTRIP | INLCR | IGNCR | ICRNL | IXON | IXOFF);
    t.c_oflag &= ~(tcflag_t)OPOST;
    t.c_lflag &= ~(tcflag_t)(ECHO | ECHONL | ICANON | ISIG | IEXTEN);
    t.c_cflag &= ~(tcflag_t)(CSIZE | PARENB);
    t.c_cflag |= CS8 | CLOCAL | CREAD;
    t.c_cc[VMIN] = 1;
    t.c_cc[VTIME] = 0;
    return tcsetattr(fd, TCSANOW, &t) == 0;
}

/* Create the pty and make its slave raw (the setting outlives our close). We do not keep
 * the slave open: then the master reports POLLHUP exactly while no host has the port open,
 * which is how we notice a host leaving (see track_host). */
static int open_pty(char *path, size_t cap)
{
    int m = posix_openpt(O_RDWR | O_NOCTTY);
    if (m < 0 || grantpt(m) != 0 || unlockpt(m) != 0) {
        return -1;
    }
    const char *name = ptsname(m);
    if (name == NULL || strlen(name) >= cap) {
        close(m);
        return -1;
    }
    strcpy(path, name);
    int s = open(path, O_RDWR | O_NOCTTY);
    int ok = s >= 0 && make_raw(s) && set_nonblock(m);
    if (s >= 0) {
        close(s);
    }
    if (!ok) {
        close(m);
        return -1;
    }
    return m;
}

/* 1 if a host has the pty open, 0 if not, -1 if poll failed (then the caller keeps its
 * view: a signal interrupting this poll must not look like a host leaving). */
static int pty_has_host(int master)
{
    struct pollfd p;
    p.fd = master;
    p.events = POLLIN;
    for (;;) {
        p.revents = 0;
        int rc = poll(&p, 1, 0);
        if (rc >= 0) {
            return (p.revents & POLLHUP) == 0;
        }
        if (errno != EINTR) {
            return -1;
        }
    }
}

/* A host closing the pty is the host build's "DTR dropped": the channel closes and what
 * the departed host did not read is thrown away, so whoever opens the port next starts
 * clean instead of reading seconds-old frames as if they were new. */
static void track_host(int master, host_port_t *hp, fw_t *fw)
{
    int present = pty_has_host(master);
    if (present < 0) {
        return;
    }
    if (hp->detached && present) {
        hp->detached = false;
        fputs("fleetnode-shim: host attached\n", stderr);
    } else if (!hp->detached && !present) {
        hp->detached = true;
        host_discard(hp);
        fw_on_host_detached(fw);
        tcflush(master, TCIOFLUSH);
        fputs("fleetnode-shim: host detached\n", stderr);
        if (pty_has_host(master) == 1) {
            fputs("fleetnode-shim: a host attached during the flush; its first bytes may be lost\n",
                  stderr);
        }
    }
}

typedef struct {
    char buf[CANDUMP_LINE_MAX + 2u];
    size_t len;
    int discarding; /* current line is over-long: skip to its newline */
    unsigned long lines, frames, errors, bad, blank;
} can_input_t;

static void inject_line(fw_t *fw, can_input_t *in)
{
    fw_can_frame_t frame;
    uint8_t errors = 0u;
    in->lines++;
    switch (candump_parse(in->buf, in->len, &frame, &errors)) {
    case CANDUMP_FRAME:
        in->frames++;
        fw_on_can_frame(fw, &frame);
        break;
    case CANDUMP_ERROR:
        in->errors++;
        fw_on_can_error(fw, errors);
        break;
    case CANDUMP_BLANK:
        in->blank++;
        break;
    case CANDUMP_BAD:
        in->bad++;
        if (in->bad <= 10u) {
            fprintf(stderr, "fleetnode-shim: bad CAN input line %lu ignored\n", in->lines);
        }
        break;
    }
}

/* Returns 0 at EOF, -1 on error, 1 otherwise. Each complete line is injected, then the
 * firmware gets a main-loop turn, as a controller interrupt would interleave with it. */
static int read_can_input(int fd, fw_t *fw, can_input_t *in, host_port_t *hp)
{
    char chunk[4096];
    ssize_t n = read(fd, chunk, sizeof chunk);
    if (n == 0) {
        return 0;
    }
    if (n < 0) {
        return (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) ? 1 : -1;
    }
    for (ssize_t i = 0; i < n; i++) {
        char c = chunk[i];
        if (c == '\n') {
            if (in->discarding) {
                in->lines++;
                in->bad++;
            } else {
                inject_line(fw, in);
            }
            in->len = 0u;
            in->discarding = 0;
            fw_poll(fw);
            host_flush_tx(hp);
        } else if (!in->discarding) {
            if (in->len >= CANDUMP_LINE_MAX) {
                in->discarding = 1;
            } else {
                in->buf[in->len++] = c;
            }
        }
    }
    return 1;
}

static void dump_counters(const fw_t *fw, const can_input_t *in)
{
    const fw_counters_t *c = &fw->counters;
    fprintf(stderr,
            "fleetnode-shim: counters rx=%lu filtered=%lu overflow=%lu invalid=%lu closed=%lu "
            "out=%lu txrefused=%lu cmdok=%lu cmderr=%lu overlong=%lu canerr=%lu highwater=%lu "
            "detached=%lu "
            "input_lines=%lu input_frames=%lu input_errors=%lu input_bad=%lu\n",
            (unsigned long)c->rx_frames, (unsigned long)c->rx_filtered,
            (unsigned long)c->rx_overflow, (unsigned long)c->rx_invalid,
            (unsigned long)c->rx_closed, (unsigned long)c->frames_out,
            (unsigned long)c->tx_refused, (unsigned long)c->cmd_ok, (unsigned long)c->cmd_error,
            (unsigned long)c->cmd_overlong, (unsigned long)c->can_errors,
            (unsigned long)fw->ring.high_water, (unsigned long)c->host_detached, in->lines, in->frames, in->errors, in->bad);
}

/* True once the host has read everything written to our pty (or has gone). Bytes still
 * travelling from the master into the slave's queue are not counted yet, hence the settle
 * time after the last write. Closing the master earlier would throw away unread frames. */
static int host_has_read_all(const char *pty_path, const host_port_t *hp)
{
    if (pty_path == NULL || hp->detached) {
        return 1;
    }
    int s = open(pty_path, O_RDWR | O_NOCTTY | O_NONBLOCK);
    if (s < 0) {
        return 1;
    }
    int unread = 0;
    int rc = ioctl(s, FIONREAD, &unread);
    close(s);
    return rc != 0 || (unread == 0 && host_now_us() - hp->last_write_us > SETTLE_US);
}

static int open_can_input(const options_t *o)
{
    if (o->can_in_path == NULL) {
        /* Not made non-blocking: that flag would be shared with whoever else holds this
         * stdin (a terminal, the parent shell). It is read only after poll() says so. */
        return STDIN_FILENO;
    }
    struct stat st;
    int fifo = stat(o->can_in_path, &st) == 0 && S_ISFIFO(st.st_mode);
    /* A FIFO opened read-write never reports EOF when a writer leaves, so writers may come
     * and go; with --exit-on-eof the first writer closing ends the run instead. */
    int flags = (fifo && !o->exit_on_eof) ? O_RDWR : O_RDONLY;
    return open(o->can_in_path, flags | O_NONBLOCK | O_NOCTTY);
}

int main(int argc, char **argv)
{
    options_t opt;
    if (!parse_args(argc, argv, &opt)) {
        fputs(USAGE, stderr);
        return 2;
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    if (pipe(g_wake) != 0 || !set_nonblock(g_wake[0]) || !set_nonblock(g_wake[1])) {
        perror("fleetnode-shim: pipe");
        return 1;
    }
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    int uart_fd;
    char pty_path[256];
    if (opt.uart_path != NULL) {
        uart_fd = open(opt.uart_path, O_RDWR | O_NOCTTY | O_NONBLOCK);
        if (uart_fd < 0 || (isatty(uart_fd) && !make_raw(uart_fd))) {
            fprintf(stderr, "fleetnode-shim: --uart %s: %s\n", opt.uart_path, strerror(errno));
            return 1;
        }
    } else {
        uart_fd = open_pty(pty_path, sizeof pty_path);
        if (uart_fd < 0) {
            perror("fleetnode-shim: pty");
            return 1;
        }
    }
    int can_fd = open_can_input(&opt);
    if (can_fd < 0) {
        fprintf(stderr, "fleetnode-shim: CAN input: %s\n", strerror(errno));
        return 1;
    }

    static host_port_t hp;
    static fw_hal_t hal;
    static fw_t fw;
    static can_input_t in;
    host_port_init(&hp, uart_fd, (uint32_t)opt.uart_bps, (uint32_t)opt.clock_start);
    const char *own_pty = opt.uart_path == NULL ? pty_path : NULL;
    hp.own_pty = own_pty != NULL;
    hp.detached = hp.own_pty; /* until a host opens the pty */
    host_port_hal(&hp, &hal);
    if (!fw_init(&fw, &hal, &opt.cfg)) {
        fputs("fleetnode-shim: invalid --serial (4 letters or digits)\n", stderr);
        return 2;
    }

    printf("%s\n", opt.uart_path != NULL ? opt.uart_path : pty_path);
    fflush(stdout);

    int can_eof = 0;
    int status = 0;
    uint64_t eof_at = 0u;
    while (!g_stop) {
        if (own_pty != NULL) {
            track_host(uart_fd, &hp, &fw);
        }
        fw_poll(&fw);
        host_flush_tx(&hp);
        if (g_dump) {
            g_dump = 0;
            dump_counters(&fw, &in);
        }
        if (hp.uart_failed) {
            fputs("fleetnode-shim: UART closed or failed\n", stderr);
            status = 1;
            break;
        }
        if (can_eof && opt.exit_on_eof) {
            int busy = fw_ring_count(&fw.ring) > 0u || host_tx_pending(&hp) > 0u ||
                       !host_has_read_all(own_pty, &hp);
            if (!busy || host_now_us() - eof_at > EOF_DRAIN_US) {
                break;
            }
        }

        struct pollfd pfd[3];
        nfds_t n = 0;
        pfd[n].fd = g_wake[0];
        pfd[n++].events = POLLIN;
        pfd[n].fd = hp.detached ? -1 : uart_fd; /* a negative fd is skipped by poll */
        pfd[n].events = 0;
        if (host_rx_room(&hp) > 0u) {
            pfd[n].events |= POLLIN;
        }
        uint64_t wait_us = host_tx_pending(&hp) > 0u ? host_tx_wait_us(&hp) : 0u;
        if (host_tx_pending(&hp) > 0u && wait_us == 0u) {
            pfd[n].events |= POLLOUT;
        }
        n++;
        if (!can_eof) {
            pfd[n].fd = can_fd;
            pfd[n++].events = POLLIN;
        }

        int timeout_ms = -1;
        if (wait_us > 0u) {
            timeout_ms = (int)((wait_us + 999u) / 1000u);
        }
        /* More frames queued and room to write them: come straight back. */
        if (fw_ring_count(&fw.ring) > 0u && host_tx_pending(&hp) + FW_FRAME_LINE_MAX <= hp.tx_cap) {
            timeout_ms = 0;
        }
        if (can_eof && opt.exit_on_eof && (timeout_ms < 0 || timeout_ms > 50)) {
            timeout_ms = 50; /* re-check the drain deadline */
        }
        if (hp.detached && (timeout_ms < 0 || timeout_ms > ATTACH_POLL_MS)) {
            timeout_ms = ATTACH_POLL_MS; /* no POLLIN while detached: look for a host */
        }
        if (poll(pfd, n, timeout_ms) < 0) {
            if (errno == EINTR) {
                continue;
            }
            perror("fleetnode-shim: poll");
            status = 1;
            break;
        }
        if (pfd[0].revents != 0) {
            char sink[16];
            while (read(g_wake[0], sink, sizeof sink) > 0) {
            }
        }
        if ((pfd[1].revents & (POLLIN | POLLERR | POLLHUP)) != 0) {
            host_fill_rx(&hp);
        }
        if (n > 2 && pfd[2].revents != 0) {
            int r = read_can_input(can_fd, &fw, &in, &hp);
            if (r <= 0) {
                if (r < 0) {
                    fprintf(stderr, "fleetnode-shim: CAN input: %s\n", strerror(errno));
                }
                can_eof = 1;
                eof_at = host_now_us();
            }
        }
    }

    dump_counters(&fw, &in);
    if (can_fd != STDIN_FILENO) {
        close(can_fd);
    }
    close(uart_fd);
    return status;
}
