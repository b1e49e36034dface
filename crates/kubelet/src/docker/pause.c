/*
 * shoal's pause program: the one process of a pod's sandbox container under
 * the docker runtime. It holds the pod's network and IPC namespaces (and its
 * PID namespace when the pod shares one) for the app containers that join
 * them, reaps the zombies it inherits as PID 1, and exits at once on SIGINT
 * or SIGTERM. Built static by build.rs, so its image is this file alone.
 */
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void stop(int sig) {
    (void)sig;
    _exit(0);
}

static void reap(int sig) {
    (void)sig;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
}

int main(void) {
    struct sigaction act;
    memset(&act, 0, sizeof act);
    act.sa_handler = stop;
    if (sigaction(SIGINT, &act, NULL) < 0 || sigaction(SIGTERM, &act, NULL) < 0) {
        return 1;
    }
    act.sa_handler = reap;
    act.sa_flags = SA_NOCLDSTOP;
    if (sigaction(SIGCHLD, &act, NULL) < 0) {
        return 2;
    }
    for (;;) {
        pause();
    }
}
