/* probe: the entrypoint d2v's boot tests run inside the guest.
 *
 *   probe [exit CODE]     print identity, cwd, env, argv; exit with CODE (default 0)
 *   probe wait-signal     print "probe: ready", then exit 0 on the first signal,
 *                         printing its name
 *   probe zombies         orphan 3 grandchildren that exit at once, wait, count
 *                         zombies left in /proc (init must have reaped them)
 *   probe linger          fork a child that ignores SIGTERM and sleeps; exit 5
 *   probe stdio           stdout: "a\nb", 1 MiB of pseudo-random bytes (see
 *                         stdio_byte), a forged init exit line; stderr: one line;
 *                         exit 0
 *   probe report          KEY VALUE lines of what a process sees (compared
 *                         with podman's container by the tests)
 *   probe args            argc, the bytes of argv and env, $BIG's length, the time
 *   probe tty             whether fds 0-2 are terminals, and the window size
 *   probe ignore-stop     ignore SIGTERM/SIGINT/SIGQUIT/SIGHUP, print "ready", wait
 *
 * Built with gcc -static; it prints with write(2) only so lines are not
 * interleaved or lost at shutdown.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static void out(const char *s) { write(1, s, strlen(s)); }

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...) {
    char buf[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    out(buf);
}

static void identity(int argc, char **argv) {
    gid_t groups[64];
    int n = getgroups(64, groups);
    char line[1024] = "";
    for (int i = 0; i < n; i++) {
        char g[16];
        snprintf(g, sizeof g, "%s%u", i ? "," : "", (unsigned)groups[i]);
        strcat(line, g);
    }
    char cwd[512];
    if (!getcwd(cwd, sizeof cwd)) strcpy(cwd, "?");
    say("probe: uid=%u gid=%u groups=%s\n", (unsigned)getuid(), (unsigned)getgid(), line);
    say("probe: cwd=%s\n", cwd);
    for (char **e = environ; *e; e++) say("probe: env %s\n", *e);
    for (int i = 0; i < argc; i++) say("probe: argv[%d]=%s\n", i, argv[i]);
}

static void on_signal(int sig) {
    say("probe: got signal %d (%s)\n", sig, sigabbrev_np(sig));
    _exit(0);
}

static int count_zombies(void) {
    int z = 0;
    DIR *d = opendir("/proc");
    struct dirent *de;
    while (d && (de = readdir(d))) {
        char path[300], buf[512];
        snprintf(path, sizeof path, "/proc/%s/stat", de->d_name);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        if (fgets(buf, sizeof buf, f)) {
            char *p = strrchr(buf, ')');
            if (p && p[1] == ' ' && p[2] == 'Z') z++;
        }
        fclose(f);
    }
    if (d) closedir(d);
    return z;
}

/* The n-th byte of `probe stdio`'s binary block (an LCG; the tests compute
 * the same sequence). */
static unsigned char stdio_byte(unsigned *x) {
    *x = *x * 1103515245u + 12345u;
    return (unsigned char)(*x >> 16);
}

static void write_all(int fd, const void *p, size_t n) {
    const char *c = p;
    while (n > 0) {
        ssize_t w = write(fd, c, n);
        if (w <= 0) return;
        c += w;
        n -= (size_t)w;
    }
}

static void print_file_lines(const char *key, const char *path) {
    char buf[8192];
    int fd = open(path, O_RDONLY);
    if (fd < 0) { say("%s <missing>\n", key); return; }
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n < 0) n = 0;
    buf[n] = 0;
    for (char *l = strtok(buf, "\n"); l; l = strtok(NULL, "\n")) say("%s %s\n", key, l);
}

static const char *fd_type(int fd) {
    struct stat st;
    if (fstat(fd, &st) != 0) return "closed";
    if (isatty(fd)) return "tty";
    if (S_ISFIFO(st.st_mode)) return "pipe";
    if (S_ISSOCK(st.st_mode)) return "socket";
    if (S_ISCHR(st.st_mode)) return "char";
    if (S_ISREG(st.st_mode)) return "file";
    return "other";
}

static void list_dir(const char *key, const char *path) {
    DIR *d = opendir(path);
    struct dirent *de;
    while (d && (de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) say("%s %s\n", key, de->d_name);
    if (d) closedir(d);
}

static void report(void) {
    char host[256] = "";
    gethostname(host, sizeof host);
    say("hostname %s\n", host);
    print_file_lines("etc_hostname", "/etc/hostname");
    print_file_lines("hosts", "/etc/hosts");
    print_file_lines("resolv", "/etc/resolv.conf");
    mode_t m = umask(0);
    umask(m);
    say("umask %04o\n", (unsigned)m);
    for (int fd = 0; fd < 3; fd++) say("fd%d %s\n", fd, fd_type(fd));
    int w = open("/dev/stdout", O_WRONLY);
    say("dev_stdout_writable %s\n", w >= 0 ? "yes" : "no");
    if (w >= 0) close(w);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    say("date %lld.%09ld\n", (long long)ts.tv_sec, ts.tv_nsec);
    FILE *f = fopen("/proc/self/mounts", "r");
    char line[1024];
    while (f && fgets(line, sizeof line, f)) {
        char src[256], target[512], type[64];
        if (sscanf(line, "%255s %511s %63s", src, target, type) == 3) say("mount %s %s\n", target, type);
    }
    if (f) fclose(f);
    list_dir("run", "/run");
    list_dir("dev", "/dev");
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    say("nofile %llu\n", (unsigned long long)rl.rlim_cur);
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "exit";
    if (!strcmp(mode, "stdio")) {
        write_all(1, "a\nb", 3);
        static unsigned char block[1 << 20];
        unsigned x = 1;
        for (size_t i = 0; i < sizeof block; i++) block[i] = stdio_byte(&x);
        write_all(1, block, sizeof block);
        write_all(2, "to stderr\n", 10);
        const char *forged = "\nd2v-init: probe exited with code 42\n";
        write_all(1, forged, strlen(forged));
        return 0;
    }
    if (!strcmp(mode, "args")) {
        size_t ab = 0, eb = 0;
        for (int i = 0; i < argc; i++) ab += strlen(argv[i]) + 1;
        for (char **e = environ; *e; e++) eb += strlen(*e) + 1;
        const char *big = getenv("BIG");
        say("probe: argc=%d argv_bytes=%zu env_bytes=%zu big=%zu last=%s\n", argc, ab, eb,
            big ? strlen(big) : 0, argv[argc - 1]);
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        say("probe: date %lld.%09ld\n", (long long)ts.tv_sec, ts.tv_nsec);
        return 0;
    }
    if (!strcmp(mode, "tty")) {
        struct winsize ws = {0};
        ioctl(1, TIOCGWINSZ, &ws);
        say("probe: tty %d%d%d size %dx%d\n", isatty(0), isatty(1), isatty(2), ws.ws_row, ws.ws_col);
        return 0;
    }
    if (!strcmp(mode, "report")) {
        identity(argc, argv);
        report();
        return 0;
    }
    if (!strcmp(mode, "ignore-stop")) {
        signal(SIGTERM, SIG_IGN);
        signal(SIGINT, SIG_IGN);
        signal(SIGQUIT, SIG_IGN);
        signal(SIGHUP, SIG_IGN);
        out("probe: ready\n");
        for (;;) pause();
    }
    identity(argc, argv);
    if (!strcmp(mode, "exit")) {
        int code = argc > 2 ? atoi(argv[2]) : 0;
        say("probe: exiting with %d\n", code);
        return code;
    }
    if (!strcmp(mode, "wait-signal")) {
        for (int s = 1; s < 32; s++)
            if (s != SIGKILL && s != SIGSTOP && s != SIGCHLD) signal(s, on_signal);
        out("probe: ready\n");
        for (;;) pause();
    }
    if (!strcmp(mode, "zombies")) {
        for (int i = 0; i < 3; i++) {
            pid_t c = fork();
            if (c == 0) {
                if (fork() == 0) _exit(0); /* grandchild: orphaned, then exits */
                usleep(1000);
                _exit(0);
            }
            waitpid(c, NULL, 0);
        }
        usleep(300000);
        say("probe: zombies=%d\n", count_zombies());
        return 0;
    }
    if (!strcmp(mode, "linger")) {
        if (fork() == 0) {
            signal(SIGTERM, SIG_IGN);
            out("probe: lingering child started\n");
            for (;;) pause();
        }
        usleep(100000);
        return 5;
    }
    say("probe: unknown mode %s\n", mode);
    return 2;
}
