/* The load side of benchmarks/e2e.py: WebSocket subscribers and HTTP publishers on one core.
 *
 * One process, one thread, one epoll loop, so that one core can drive a server harder than
 * the server can go (e2e.py prints this process's CPU beside every figure to prove it).
 *
 *   e2e_load --port P --server omflow|nchan [--key K] [--publish-key K] [--partner ID]
 *            --conns N --contests C [--publishers P] [--rate R] [--warmup S] [--seconds S]
 *            [--batch K] [--hold]
 *
 * Subscribers: N WebSocket connections; connection i follows contest i % C. For omflow the
 * upgrade is GET /flow/v1/stream?api_key=K, then a `subscribe` message once `connected`
 * arrives, and the connection counts as ready on `subscribed`; for nchan it is GET /sub/<id>
 * and ready on the 101. Every text frame holding `"available":` is one delivery: its
 * latency is now minus that number, CLOCK_MONOTONIC microseconds that the publisher put there
 * when it sent the publish. Pings are answered.
 *
 * Publishers: P keep-alive HTTP connections POSTing one entry per request, round-robin over
 * the contests. omflow: POST /flow/v1/partners/<partner>/liquidity with X-API-Key; nchan:
 * POST /pub/<id> with the same JSON body. With --rate 0 (saturating) each publisher keeps
 * one request in flight and sends the next when the answer comes; with --rate R the loop
 * sends R per second in 1 ms ticks, spread over the publishers (pipelined when one is busy).
 * With --batch K (omflow only) each request carries K one-entry publishes for K consecutive
 * contests: POST /flow/v1/partners/<partner>/liquidity/batch with {"publishes": [...]}.
 *
 * After --warmup seconds, the counts start (the line `start` goes to stdout); after --seconds
 * more, they stop, and one JSON line goes to stdout. With --hold, no publishing: once every subscriber is ready the line
 * `ready` goes to stdout and the process holds the connections until stdin closes.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define HIST_US 2000000 /* exact histogram up to 2 s; later ones count as 2 s */
#define READ_BUF (1 << 20)

enum { OMFLOW, NCHAN };
enum { SUB_HANDSHAKE, SUB_CONNECTED, SUB_SUBSCRIBING, SUB_READY };

typedef struct {
    int fd;
    int is_pub;
    int state;
    int contest;
    int in_flight; /* publisher: requests sent and not answered */
    int upgrade_sent;
    uint8_t *left; /* bytes of an unfinished frame or response */
    size_t left_len, left_cap;
    uint8_t *out; /* bytes the socket did not take */
    size_t out_len, out_cap;
} conn_t;

static int server_kind = OMFLOW;
static int port = 0;
static const char *key = "", *publish_key = "", *partner = "bench";
static int n_conns = 1000, n_contests = 10, n_pubs = 16, hold = 0;
static int batch = 1; /* omflow: publishes per request (>1: POST .../liquidity/batch) */
static double rate = 0, warmup_s = 2, measure_s = 5;

static int ep;
static conn_t *subs, *pubs;
static int ready_subs = 0, failed = 0;
static uint8_t *rbuf;
static uint32_t *hist;
static uint64_t hist_over = 0;
static int counting = 0, publishing = 0;
static uint64_t deliveries = 0, delivered_bytes = 0, published = 0, publish_errors = 0;
static uint64_t sent_publishes = 0, other_frames = 0, closes = 0;
static uint64_t next_contest = 0;

static inline int64_t now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static double cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
           (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static void die(const char *what) {
    fprintf(stderr, "e2e_load: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void contest_id(int index, char *out) { sprintf(out, "ct_e2e%05d", index); }

static void append(uint8_t **buf, size_t *len, size_t *cap, const void *data, size_t n) {
    if (*len + n > *cap) {
        size_t want = *cap ? *cap : 256;
        while (want < *len + n) want *= 2;
        *buf = realloc(*buf, want);
        if (!*buf) die("realloc");
        *cap = want;
    }
    memcpy(*buf + *len, data, n);
    *len += n;
}

static void arm(conn_t *c, int want_out) {
    struct epoll_event ev = {.events = EPOLLIN | (want_out ? EPOLLOUT : 0), .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

/* Write now what the socket takes; keep the rest for EPOLLOUT. */
static void send_bytes(conn_t *c, const void *data, size_t n) {
    if (c->out_len == 0) {
        ssize_t w = send(c->fd, data, n, MSG_NOSIGNAL);
        if (w == (ssize_t)n) return;
        if (w < 0) {
            if (errno != EAGAIN) return; /* the read side sees the close */
            w = 0;
        }
        append(&c->out, &c->out_len, &c->out_cap, (const uint8_t *)data + w, n - (size_t)w);
        arm(c, 1);
        return;
    }
    append(&c->out, &c->out_len, &c->out_cap, data, n);
}

static void flush_out(conn_t *c) {
    while (c->out_len) {
        ssize_t w = send(c->fd, c->out, c->out_len, MSG_NOSIGNAL);
        if (w <= 0) return;
        memmove(c->out, c->out + w, c->out_len - (size_t)w);
        c->out_len -= (size_t)w;
    }
    arm(c, 0);
}

static int open_conn(conn_t *c, int is_pub) {
    memset(c, 0, sizeof *c);
    c->is_pub = is_pub;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (c->fd < 0) die("socket");
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(c->fd, (struct sockaddr *)&addr, sizeof addr) < 0 && errno != EINPROGRESS)
        die("connect");
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0) die("epoll_ctl");
    return 0;
}

/* A masked client frame (the mask is zero: XOR with it leaves the payload as it is). */
static void send_frame(conn_t *c, int opcode, const uint8_t *payload, size_t n) {
    uint8_t head[8 + 4];
    size_t h = 0;
    head[h++] = (uint8_t)(0x80 | opcode);
    if (n < 126) {
        head[h++] = (uint8_t)(0x80 | n);
    } else {
        head[h++] = 0x80 | 126;
        head[h++] = (uint8_t)(n >> 8);
        head[h++] = (uint8_t)n;
    }
    memset(head + h, 0, 4);
    h += 4;
    uint8_t frame[512];
    if (h + n > sizeof frame) return;
    memcpy(frame, head, h);
    memcpy(frame + h, payload, n);
    send_bytes(c, frame, h + n);
}

static void send_upgrade(conn_t *c) {
    char req[512], id[32];
    int n;
    if (server_kind == OMFLOW) {
        n = snprintf(req, sizeof req,
                     "GET /flow/v1/stream?api_key=%s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n",
                     key);
    } else {
        contest_id(c->contest, id);
        n = snprintf(req, sizeof req,
                     "GET /sub/%s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n",
                     id);
    }
    send_bytes(c, req, (size_t)n);
}

static void send_publish(conn_t *c) {
    char body[256 * 64], req[256 * 64 + 512], id[32];
    int64_t stamp = now_us();
    int bn = 0;
    if (batch > 1) bn += snprintf(body + bn, sizeof body - (size_t)bn, "{\"publishes\":[");
    for (int k = 0; k < batch; k++) {
        int contest = (int)(next_contest++ % (uint64_t)n_contests);
        contest_id(contest, id);
        bn += snprintf(body + bn, sizeof body - (size_t)bn,
                       "%s{\"contest_id\":\"%s\",\"entries\":[{\"liquidity_hash\":"
                       "\"%s:%s:mk_ml:side_home:var_0:p_home:tf_full\",\"price\":0.5,"
                       "\"available\":%lld}]}",
                       k ? "," : "", id, partner, id, (long long)stamp);
    }
    if (batch > 1) bn += snprintf(body + bn, sizeof body - (size_t)bn, "]}");
    int n;
    if (server_kind == OMFLOW)
        n = snprintf(req, sizeof req,
                     "POST /flow/v1/partners/%s/liquidity%s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     "X-API-Key: %s\r\nContent-Type: application/json\r\n"
                     "Content-Length: %d\r\n\r\n%s",
                     partner, batch > 1 ? "/batch" : "", publish_key, bn, body);
    else
        n = snprintf(req, sizeof req,
                     "POST /pub/%s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
                     id, bn, body);
    c->in_flight++;
    sent_publishes += (uint64_t)batch;
    send_bytes(c, req, (size_t)n);
}

static void record_delivery(const uint8_t *p, size_t n, int64_t now) {
    static const char tag[] = "\"available\":";
    const uint8_t *hit = memmem(p, n, tag, sizeof tag - 1);
    if (!hit) {
        other_frames++;
        return;
    }
    if (!counting) return;
    const uint8_t *d = hit + sizeof tag - 1, *end = p + n;
    int64_t stamp = 0;
    while (d < end && *d >= '0' && *d <= '9') stamp = stamp * 10 + (*d++ - '0');
    deliveries++;
    delivered_bytes += n;
    int64_t lat = now - stamp;
    if (lat < 0) lat = 0;
    if (lat < HIST_US)
        hist[lat]++;
    else
        hist_over++;
}

static void on_text(conn_t *c, const uint8_t *p, size_t n, int64_t now) {
    if (c->state == SUB_READY) {
        record_delivery(p, n, now);
        return;
    }
    if (c->state == SUB_CONNECTED && memmem(p, n, "\"connected\"", 11)) {
        char msg[160], id[32];
        contest_id(c->contest, id);
        int m = snprintf(msg, sizeof msg,
                         "{\"action\":\"subscribe\",\"channel\":\"liquidity\","
                         "\"contest_ids\":[\"%s\"]}",
                         id);
        send_frame(c, 0x1, (const uint8_t *)msg, (size_t)m);
        c->state = SUB_SUBSCRIBING;
    } else if (c->state == SUB_SUBSCRIBING && memmem(p, n, "\"subscribed\"", 12)) {
        c->state = SUB_READY;
        ready_subs++;
    } else if (memmem(p, n, "\"error\"", 7)) {
        fprintf(stderr, "e2e_load: server said %.*s\n", (int)(n > 200 ? 200 : n), p);
        failed++;
    }
}

/* Parse what a subscriber has; return bytes consumed. */
static size_t sub_parse(conn_t *c, uint8_t *p, size_t n, int64_t now) {
    size_t pos = 0;
    if (c->state == SUB_HANDSHAKE) {
        uint8_t *end = memmem(p, n, "\r\n\r\n", 4);
        if (!end) return 0;
        if (n < 12 || memcmp(p + 9, "101", 3) != 0) {
            fprintf(stderr, "e2e_load: upgrade refused: %.*s\n", (int)(n > 120 ? 120 : n), p);
            failed++;
            return n;
        }
        pos = (size_t)(end + 4 - p);
        if (server_kind == OMFLOW) {
            c->state = SUB_CONNECTED;
        } else {
            c->state = SUB_READY;
            ready_subs++;
        }
    }
    while (n - pos >= 2) {
        uint8_t *f = p + pos;
        int opcode = f[0] & 0x0F;
        size_t len = f[1] & 0x7F, head = 2;
        if (len == 126) {
            if (n - pos < 4) break;
            len = ((size_t)f[2] << 8) | f[3];
            head = 4;
        } else if (len == 127) {
            if (n - pos < 10) break;
            len = 0;
            for (int i = 0; i < 8; i++) len = (len << 8) | f[2 + i];
            head = 10;
        }
        if (n - pos < head + len) break;
        uint8_t *payload = f + head;
        if (opcode == 0x1 || opcode == 0x0)
            on_text(c, payload, len, now);
        else if (opcode == 0x9)
            send_frame(c, 0xA, payload, len);
        else if (opcode == 0x8)
            closes++;
        pos += head + len;
    }
    return pos;
}

/* Parse HTTP answers on a publisher; return bytes consumed. */
static size_t pub_parse(conn_t *c, uint8_t *p, size_t n) {
    size_t pos = 0;
    for (;;) {
        uint8_t *start = p + pos;
        uint8_t *end = memmem(start, n - pos, "\r\n\r\n", 4);
        if (!end) break;
        size_t head_len = (size_t)(end + 4 - start), body = 0;
        int chunked = 0;
        for (uint8_t *line = start; line < end;) {
            uint8_t *eol = memmem(line, (size_t)(end + 2 - line), "\r\n", 2);
            if (!eol) break;
            if (eol - line > 15 && strncasecmp((char *)line, "content-length:", 15) == 0)
                body = strtoul((char *)line + 15, NULL, 10);
            else if (eol - line > 18 && strncasecmp((char *)line, "transfer-encoding:", 18) == 0)
                chunked = 1;
            line = eol + 2;
        }
        size_t whole = head_len + body;
        if (chunked) {
            uint8_t *last = memmem(end + 4, n - pos - head_len, "0\r\n\r\n", 5);
            if (!last) break;
            whole = (size_t)(last + 5 - start);
        }
        if (n - pos < whole) break;
        int status = atoi((char *)start + 9);
        c->in_flight--;
        if (counting) {
            if (status >= 200 && status < 300)
                published += (uint64_t)batch;
            else
                publish_errors++;
        }
        if (status < 200 || status >= 300) {
            static int shown = 0;
            if (shown++ < 3)
                fprintf(stderr, "e2e_load: publish answered %.*s\n",
                        (int)(whole > 200 ? 200 : whole), start);
        }
        pos += whole;
        if (rate == 0 && publishing) send_publish(c);
    }
    return pos;
}

static void on_readable(conn_t *c, int64_t now) {
    for (;;) {
        size_t have = c->left_len;
        if (have) memcpy(rbuf, c->left, have);
        ssize_t r = recv(c->fd, rbuf + have, READ_BUF - have, 0);
        if (r == 0) {
            epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
            close(c->fd);
            c->fd = -1;
            closes++;
            if (!hold || c->state != SUB_READY) {
                if (failed++ == 0)
                    fprintf(stderr, "e2e_load: the server closed a %s connection (state %d)\n",
                            c->is_pub ? "publish" : "stream", c->state);
            }
            return;
        }
        if (r < 0) return;
        size_t n = have + (size_t)r;
        size_t used = c->is_pub ? pub_parse(c, rbuf, n) : sub_parse(c, rbuf, n, now);
        c->left_len = 0;
        if (used < n) append(&c->left, &c->left_len, &c->left_cap, rbuf + used, n - used);
        if ((size_t)r < READ_BUF - have) return;
    }
}

static void run_loop(int64_t until, int want_ready) {
    struct epoll_event events[512];
    int64_t next_tick = now_us(), owed_since = next_tick;
    uint64_t owed_sent = 0, rr = 0;
    for (;;) {
        int64_t now = now_us();
        if (until && now >= until) return;
        if (want_ready && ready_subs >= n_conns) return;
        if (failed) {
            fprintf(stderr, "e2e_load: %d connection(s) failed\n", failed);
            exit(1);
        }
        if (rate > 0 && publishing && now >= next_tick) {
            uint64_t owed = (uint64_t)((double)(now - owed_since) * rate / 1e6);
            for (; owed_sent < owed; owed_sent += (uint64_t)batch)
                send_publish(&pubs[rr++ % (uint64_t)n_pubs]);
            next_tick = now + 1000;
        }
        int timeout = rate > 0 && publishing ? (int)((next_tick - now + 999) / 1000) : 100;
        int k = epoll_wait(ep, events, 512, timeout < 0 ? 0 : timeout);
        now = now_us();
        for (int i = 0; i < k; i++) {
            conn_t *c = events[i].data.ptr;
            if (c->fd < 0) continue;
            if (events[i].events & EPOLLOUT) {
                if (c->state == SUB_HANDSHAKE && !c->is_pub && !c->upgrade_sent) {
                    c->upgrade_sent = 1;
                    arm(c, 0);
                    send_upgrade(c);
                } else if (c->is_pub && c->state == SUB_HANDSHAKE) {
                    c->state = SUB_READY;
                    arm(c, 0);
                } else {
                    flush_out(c);
                }
            }
            if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) on_readable(c, now);
        }
    }
}

static double latency_max(void) {
    if (hist_over) return HIST_US / 1000.0;
    for (int i = HIST_US - 1; i > 0; i--)
        if (hist[i]) return i / 1000.0;
    return 0;
}

static double percentile(uint64_t total, double q) {
    if (!total) return 0;
    uint64_t want = (uint64_t)(q * (double)total), seen = 0;
    for (int i = 0; i < HIST_US; i++) {
        seen += hist[i];
        if (seen > want) return i / 1000.0;
    }
    return HIST_US / 1000.0;
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : "";
        if (!strcmp(a, "--hold")) { hold = 1; continue; }
        if (!strcmp(a, "--port")) port = atoi(v);
        else if (!strcmp(a, "--server")) server_kind = strcmp(v, "nchan") ? OMFLOW : NCHAN;
        else if (!strcmp(a, "--key")) key = v;
        else if (!strcmp(a, "--publish-key")) publish_key = v;
        else if (!strcmp(a, "--partner")) partner = v;
        else if (!strcmp(a, "--conns")) n_conns = atoi(v);
        else if (!strcmp(a, "--contests")) n_contests = atoi(v);
        else if (!strcmp(a, "--publishers")) n_pubs = atoi(v);
        else if (!strcmp(a, "--rate")) rate = atof(v);
        else if (!strcmp(a, "--batch")) batch = atoi(v);
        else if (!strcmp(a, "--warmup")) warmup_s = atof(v);
        else if (!strcmp(a, "--seconds")) measure_s = atof(v);
        else { fprintf(stderr, "e2e_load: unknown option %s\n", a); return 2; }
        i++;
    }
    if (batch > 1 && server_kind != OMFLOW) {
        fprintf(stderr, "e2e_load: --batch is for omflow (nchan takes one message per POST)\n");
        return 2;
    }
    if (batch < 1 || batch > 64) {
        fprintf(stderr, "e2e_load: --batch must be from 1 to 64\n");
        return 2;
    }
    if (!port || n_conns < 1 || n_contests < 1 || n_pubs < 1) {
        fprintf(stderr, "e2e_load: --port, --conns, --contests and --publishers must be > 0\n");
        return 2;
    }
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    rbuf = malloc(READ_BUF);
    hist = calloc(HIST_US, sizeof *hist);
    subs = calloc((size_t)n_conns, sizeof *subs);
    pubs = calloc((size_t)n_pubs, sizeof *pubs);
    ep = epoll_create1(0);
    if (!rbuf || !hist || !subs || !pubs || ep < 0) die("setup");

    /* Connect the subscribers in waves of 200: the server's accept backlog never overflows,
     * and omflow admits at most 256 unfinished request heads per source address. */
    int64_t deadline = now_us() + 120 * 1000000LL;
    for (int opened = 0; opened < n_conns;) {
        int wave = opened + 200 < n_conns ? opened + 200 : n_conns;
        for (; opened < wave; opened++) {
            open_conn(&subs[opened], 0);
            subs[opened].contest = opened % n_contests;
        }
        while (ready_subs < opened) {
            if (now_us() > deadline) {
                fprintf(stderr, "e2e_load: %d of %d subscribers ready after 120 s\n", ready_subs,
                        n_conns);
                return 1;
            }
            run_loop(now_us() + 100000, 0);
        }
    }
    if (hold) {
        printf("ready\n");
        fflush(stdout);
        /* Hold until stdin closes, answering pings meanwhile. */
        int flags = fcntl(0, F_GETFL);
        fcntl(0, F_SETFL, flags | O_NONBLOCK);
        char sink[64];
        for (;;) {
            ssize_t r = read(0, sink, sizeof sink);
            if (r == 0 || (r < 0 && errno != EAGAIN)) break;
            run_loop(now_us() + 200000, 0);
        }
        return 0;
    }

    for (int i = 0; i < n_pubs; i++) open_conn(&pubs[i], 1);
    while (1) { /* every publisher connected */
        int up = 0;
        for (int i = 0; i < n_pubs; i++) up += pubs[i].state == SUB_READY;
        if (up == n_pubs) break;
        run_loop(now_us() + 10000, 0);
    }
    publishing = 1;
    if (rate == 0)
        for (int i = 0; i < n_pubs; i++) send_publish(&pubs[i]);

    int64_t start = now_us();
    run_loop(start + (int64_t)(warmup_s * 1e6), 0);
    counting = 1;
    printf("start\n");
    fflush(stdout);
    double cpu0 = cpu_s();
    int64_t t0 = now_us();
    run_loop(t0 + (int64_t)(measure_s * 1e6), 0);
    counting = 0;
    double wall = (now_us() - t0) / 1e6, cpu = cpu_s() - cpu0;
    uint64_t total = deliveries;
    printf("{\"deliveries_per_s\":%.1f,\"publishes_per_s\":%.1f,\"publish_errors\":%llu,"
           "\"mean_frame_bytes\":%.1f,\"latency_ms\":{\"p50\":%.3f,\"p99\":%.3f,\"p999\":%.3f,"
           "\"max\":%.3f},\"over_2s\":%llu,\"other_frames\":%llu,\"closes\":%llu,"
           "\"load_cpu\":%.3f,\"seconds\":%.3f}\n",
           deliveries / wall, published / wall, (unsigned long long)publish_errors,
           deliveries ? (double)delivered_bytes / (double)deliveries : 0.0,
           percentile(total, 0.5), percentile(total, 0.99), percentile(total, 0.999),
           latency_max(), (unsigned long long)hist_over,
           (unsigned long long)other_frames, (unsigned long long)closes, cpu / wall, wall);
    fflush(stdout);
    return 0;
}
