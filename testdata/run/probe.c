/* probe: the entrypoint d2v's boot tests run inside the guest.
 *
 *   probe [exit CODE]     print identity, cwd, env, argv; exit with CODE (default 0)
 *   probe wait-signal     print "probe: ready", then exit 0 on the first signal,
 *                         printing its name
 *   probe zombies         orphan 3 grandchildren that exit at once, wait, count
 *                         zombies left in /proc (init must have reaped them)
 *   probe linger          fork a child that ignores SIGTERM and sleeps; exit 5
 *
 * Built with gcc -static; it prints with write(2) only so lines are not
 * interleaved or lost at shutdown.
 */
#define _GNU_SOURCE
#include <dirent.h>
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

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "exit";
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
