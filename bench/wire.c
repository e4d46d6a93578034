/*
 * wire: a user-space "cable" between two TAP devices, with a fixed one-way
 * delay, random loss and an optional rate cap, for bench/datapath.py.
 *
 * Why: this kernel has no sch_netem, so a WAN (delay + loss) cannot be made
 * with `tc qdisc ... netem`. Two network namespaces, each holding one TAP
 * device, joined by this process, give real TCP over a slow, lossy path
 * without touching any existing interface.
 *
 * usage: wire NETNS_A TAP_A NETNS_B TAP_B DELAY_US LOSS_PPM RATE_BPS SEED
 *   NETNS_x  path of a network namespace (/run/netns/NAME); the TAP device is
 *            opened inside it (setns), then the fd works from anywhere
 *   DELAY_US one-way delay added to every frame, both directions
 *   LOSS_PPM frames dropped at random, per million, both directions
 *   RATE_BPS bytes per second per direction (0 = no cap); frames queue
 *            behind each other, like a link of that speed
 * Prints "ready" on stdout once both devices are attached; on SIGTERM or
 * SIGINT prints its counters on stderr and exits 0.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#define SLOTS 16384 /* frames in flight per direction (tail drop beyond) */
#define FRAME 2048  /* largest frame: MTU 1500 + Ethernet header, with room */
#define BATCH 64    /* frames read per wake-up per device */

struct slot {
    uint64_t due; /* ns, CLOCK_MONOTONIC */
    uint32_t len;
    unsigned char data[FRAME];
};

struct queue {
    struct slot *slots;
    unsigned head, tail; /* head == tail: empty */
    uint64_t last_out;   /* when the last queued frame leaves (rate cap) */
    uint64_t passed, lost, dropped;
};

static volatile sig_atomic_t stop;
static uint64_t rng;

static void on_signal(int sig) {
    (void)sig;
    stop = 1;
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t next_random(void) { /* xorshift64*: reproducible with a seed */
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 2685821657736338717ull;
}

static int open_tap(const char *netns, const char *name) {
    int ns = open(netns, O_RDONLY | O_CLOEXEC);
    if (ns < 0 || setns(ns, CLONE_NEWNET) != 0) {
        perror(netns);
        exit(2);
    }
    close(ns);
    int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NONBLOCK);
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
    strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
    if (fd < 0 || ioctl(fd, TUNSETIFF, &ifr) != 0) {
        perror(name);
        exit(2);
    }
    return fd;
}

/* Read what `in` has (up to BATCH frames) into `q`, dropping some. */
static void receive(int in, struct queue *q, uint64_t delay, uint64_t loss_ppm, uint64_t rate) {
    for (int i = 0; i < BATCH; i++) {
        struct slot *s = &q->slots[q->tail];
        ssize_t n = read(in, s->data, FRAME);
        if (n <= 0)
            return;
        if (next_random() % 1000000u < loss_ppm) {
            q->lost++;
            continue;
        }
        unsigned next = (q->tail + 1) % SLOTS;
        if (next == q->head) {
            q->dropped++;
            continue;
        }
        uint64_t t = now_ns();
        if (rate) { /* serialisation: the frame leaves after the ones before it */
            uint64_t start = q->last_out > t ? q->last_out : t;
            q->last_out = start + (uint64_t)n * 1000000000u / rate;
            t = q->last_out;
        }
        s->due = t + delay;
        s->len = (uint32_t)n;
        q->tail = next;
    }
}

/* Write the frames of `q` that are due to `out`. */
static void deliver(int out, struct queue *q, uint64_t t) {
    while (q->head != q->tail && q->slots[q->head].due <= t) {
        struct slot *s = &q->slots[q->head];
        if (write(out, s->data, s->len) < 0 && errno == EAGAIN)
            return; /* try again on the next wake-up */
        q->passed++;
        q->head = (q->head + 1) % SLOTS;
    }
}

static int64_t wait_ns(const struct queue *q, uint64_t t) {
    if (q->head == q->tail)
        return -1;
    uint64_t due = q->slots[q->head].due;
    return due > t ? (int64_t)(due - t) : 0;
}

int main(int argc, char **argv) {
    if (argc != 9) {
        fprintf(stderr, "usage: wire NETNS_A TAP_A NETNS_B TAP_B DELAY_US LOSS_PPM RATE_BPS SEED\n");
        return 2;
    }
    int fd[2] = {open_tap(argv[1], argv[2]), open_tap(argv[3], argv[4])};
    uint64_t delay = strtoull(argv[5], NULL, 10) * 1000u;
    uint64_t loss = strtoull(argv[6], NULL, 10);
    uint64_t rate = strtoull(argv[7], NULL, 10);
    rng = strtoull(argv[8], NULL, 10) | 1u;
    struct queue q[2]; /* q[0]: A -> B, q[1]: B -> A */
    memset(q, 0, sizeof q);
    for (int i = 0; i < 2; i++) {
        q[i].slots = malloc(sizeof(struct slot) * SLOTS);
        if (!q[i].slots) {
            perror("malloc");
            return 2;
        }
    }
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    printf("ready\n");
    fflush(stdout);
    while (!stop) {
        uint64_t t = now_ns();
        int64_t w0 = wait_ns(&q[0], t), w1 = wait_ns(&q[1], t);
        int64_t w = w0 < 0 ? w1 : (w1 < 0 ? w0 : (w0 < w1 ? w0 : w1));
        struct timespec ts = {.tv_sec = w / 1000000000, .tv_nsec = w % 1000000000};
        struct pollfd p[2] = {{.fd = fd[0], .events = POLLIN}, {.fd = fd[1], .events = POLLIN}};
        if (ppoll(p, 2, w < 0 ? NULL : &ts, NULL) < 0 && errno != EINTR) {
            perror("ppoll");
            return 1;
        }
        if (p[0].revents & POLLIN)
            receive(fd[0], &q[0], delay, loss, rate);
        if (p[1].revents & POLLIN)
            receive(fd[1], &q[1], delay, loss, rate);
        t = now_ns();
        deliver(fd[1], &q[0], t);
        deliver(fd[0], &q[1], t);
    }
    for (int i = 0; i < 2; i++)
        fprintf(stderr, "wire %s: passed %llu lost %llu dropped %llu\n", i ? "B->A" : "A->B",
                (unsigned long long)q[i].passed, (unsigned long long)q[i].lost, (unsigned long long)q[i].dropped);
    return 0;
}
