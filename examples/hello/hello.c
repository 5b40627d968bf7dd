/* The bundled example's program: shows that the microVM runs the image's
 * ENTRYPOINT and CMD as its USER, in its WORKDIR, with its ENV. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <grp.h>

int main(int argc, char **argv) {
    char cwd[4096];
    gid_t groups[64];
    int n = getgroups(64, groups);
    const char *greeting = getenv("GREETING");
    printf("%s, %s!\n", greeting ? greeting : "Hello", argc > 1 ? argv[1] : "world");
    printf("uid=%d gid=%d groups=", (int)getuid(), (int)getgid());
    for (int i = 0; i < n; i++)
        printf("%s%d", i ? "," : "", (int)groups[i]);
    printf("\ncwd=%s\n", getcwd(cwd, sizeof cwd) ? cwd : "?");
    for (int i = 0; i < argc; i++)
        printf("argv[%d]=%s\n", i, argv[i]);
    return argc > 2 ? atoi(argv[2]) : 0;
}
