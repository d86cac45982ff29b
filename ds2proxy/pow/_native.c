/*
 * DeepSeekHashV1 (SHA3-256 whose Keccak-f[1600] skips round 0) and its
 * nonce search, compiled because the pure-Python hash is ~1000x slower.
 *
 * The search absorbs the whole 136-byte blocks of the prefix once, keeps the
 * decimal nonce as text it increments in place, runs 22 unrolled rounds plus a
 * final round that only computes lane 0 unless it matches, and allocates
 * nothing per nonce. It releases the GIL while it runs.
 *
 * On x86-64 CPUs with AVX2 (detected at run time) the search hashes four
 * consecutive nonces at once, one per 64-bit element of 256-bit vectors; the
 * portable single-lane search stays for every other CPU and for nonces whose
 * four decimal texts differ in length. AVX2 is enabled per function, so the
 * module itself builds with portable flags.
 *
 * The module is top-level (``_ds2proxy_pow``), not inside the package, so an
 * installed build is found even when a source checkout shadows ``ds2proxy``.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define RATE 136
#define RATE_LANES 17
#define DIGEST 32
#define MAX_DIGITS 20 /* enough for any uint64 */

static const uint64_t RC[24] = {
    0x0000000000000001ULL, 0x0000000000008082ULL, 0x800000000000808AULL,
    0x8000000080008000ULL, 0x000000000000808BULL, 0x0000000080000001ULL,
    0x8000000080008081ULL, 0x8000000000008009ULL, 0x000000000000008AULL,
    0x0000000000000088ULL, 0x0000000080008009ULL, 0x000000008000000AULL,
    0x000000008000808BULL, 0x800000000000008BULL, 0x8000000000008089ULL,
    0x8000000000008003ULL, 0x8000000000008002ULL, 0x8000000000000080ULL,
    0x000000000000800AULL, 0x800000008000000AULL, 0x8000000080008081ULL,
    0x8000000000008080ULL, 0x0000000080000001ULL, 0x8000000080008008ULL,
};

static inline uint64_t rol(uint64_t v, unsigned n) {
    return (v << n) | (v >> ((64 - n) & 63));
}

/* The permutation macros below work on any lane type: 64-bit words here,
 * 4 x 64-bit vectors in the AVX2 search (which redefines these two). */
#define LANE_T uint64_t
#define ROL rol

static inline uint64_t load_le(const unsigned char *p) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
#else
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
#endif
}

static inline void store_le(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

/* Lanes are named by row (b g k m s = y 0..4) and column (a e i o u = x 0..4). */
#define DECLARE_LANES(S) \
    LANE_T S##ba, S##be, S##bi, S##bo, S##bu, S##ga, S##ge, S##gi, S##go, S##gu, \
        S##ka, S##ke, S##ki, S##ko, S##ku, S##ma, S##me, S##mi, S##mo, S##mu, \
        S##sa, S##se, S##si, S##so, S##su

#define LOAD_LANES(S, s) \
    S##ba = s[0];  S##be = s[1];  S##bi = s[2];  S##bo = s[3];  S##bu = s[4];  \
    S##ga = s[5];  S##ge = s[6];  S##gi = s[7];  S##go = s[8];  S##gu = s[9];  \
    S##ka = s[10]; S##ke = s[11]; S##ki = s[12]; S##ko = s[13]; S##ku = s[14]; \
    S##ma = s[15]; S##me = s[16]; S##mi = s[17]; S##mo = s[18]; S##mu = s[19]; \
    S##sa = s[20]; S##se = s[21]; S##si = s[22]; S##so = s[23]; S##su = s[24]

#define STORE_LANES(S, s) \
    s[0] = S##ba;  s[1] = S##be;  s[2] = S##bi;  s[3] = S##bo;  s[4] = S##bu;  \
    s[5] = S##ga;  s[6] = S##ge;  s[7] = S##gi;  s[8] = S##go;  s[9] = S##gu;  \
    s[10] = S##ka; s[11] = S##ke; s[12] = S##ki; s[13] = S##ko; s[14] = S##ku; \
    s[15] = S##ma; s[16] = S##me; s[17] = S##mi; s[18] = S##mo; s[19] = S##mu; \
    s[20] = S##sa; s[21] = S##se; s[22] = S##si; s[23] = S##so; s[24] = S##su

/* θ: column parities C and the per-column mask D. */
#define THETA(A) \
    LANE_T Ca = A##ba ^ A##ga ^ A##ka ^ A##ma ^ A##sa; \
    LANE_T Ce = A##be ^ A##ge ^ A##ke ^ A##me ^ A##se; \
    LANE_T Ci = A##bi ^ A##gi ^ A##ki ^ A##mi ^ A##si; \
    LANE_T Co = A##bo ^ A##go ^ A##ko ^ A##mo ^ A##so; \
    LANE_T Cu = A##bu ^ A##gu ^ A##ku ^ A##mu ^ A##su; \
    LANE_T Da = Cu ^ ROL(Ce, 1), De = Ca ^ ROL(Ci, 1), Di = Ce ^ ROL(Co, 1); \
    LANE_T Do = Ci ^ ROL(Cu, 1), Du = Co ^ ROL(Ca, 1)

/* χ on one output row from its five ρπ-moved lanes. */
#define CHI_ROW(E, R, B0, B1, B2, B3, B4) \
    E##R##a = B0 ^ (~B1 & B2); E##R##e = B1 ^ (~B2 & B3); \
    E##R##i = B2 ^ (~B3 & B4); E##R##o = B3 ^ (~B4 & B0); E##R##u = B4 ^ (~B0 & B1)

/* ρ and π gather output row R from five input lanes, then χ. */
#define ROW(A, E, R, l0, d0, r0, l1, d1, r1, l2, d2, r2, l3, d3, r3, l4, d4, r4) do { \
    LANE_T B0 = ROL(A##l0 ^ d0, r0), B1 = ROL(A##l1 ^ d1, r1); \
    LANE_T B2 = ROL(A##l2 ^ d2, r2), B3 = ROL(A##l3 ^ d3, r3); \
    LANE_T B4 = ROL(A##l4 ^ d4, r4); \
    CHI_ROW(E, R, B0, B1, B2, B3, B4); \
} while (0)

/* One full round reading lanes A and writing lanes E. */
#define ROUND(A, E, rc) do { \
    THETA(A); \
    ROW(A, E, b, ba, Da, 0, ge, De, 44, ki, Di, 43, mo, Do, 21, su, Du, 14); \
    E##ba ^= (rc); \
    ROW(A, E, g, bo, Do, 28, gu, Du, 20, ka, Da, 3, me, De, 45, si, Di, 61); \
    ROW(A, E, k, be, De, 1, gi, Di, 6, ko, Do, 25, mu, Du, 8, sa, Da, 18); \
    ROW(A, E, m, bu, Du, 27, ga, Da, 36, ke, De, 10, mi, Di, 15, so, Do, 56); \
    ROW(A, E, s, bi, Di, 62, go, Do, 55, ku, Du, 39, ma, Da, 41, se, De, 2); \
} while (0)

/* Rounds 1..22 in place on lanes A (E is scratch), fully unrolled. */
#define ROUNDS_1_TO_22(A, E) do { \
    ROUND(A, E, RC[1]);  ROUND(E, A, RC[2]);  ROUND(A, E, RC[3]);  ROUND(E, A, RC[4]);  \
    ROUND(A, E, RC[5]);  ROUND(E, A, RC[6]);  ROUND(A, E, RC[7]);  ROUND(E, A, RC[8]);  \
    ROUND(A, E, RC[9]);  ROUND(E, A, RC[10]); ROUND(A, E, RC[11]); ROUND(E, A, RC[12]); \
    ROUND(A, E, RC[13]); ROUND(E, A, RC[14]); ROUND(A, E, RC[15]); ROUND(E, A, RC[16]); \
    ROUND(A, E, RC[17]); ROUND(E, A, RC[18]); ROUND(A, E, RC[19]); ROUND(E, A, RC[20]); \
    ROUND(A, E, RC[21]); ROUND(E, A, RC[22]); \
} while (0)

/* Keccak-f[1600] with rounds 1..23. */
static void permute(uint64_t s[25]) {
    DECLARE_LANES(A);
    DECLARE_LANES(E);
    LOAD_LANES(A, s);
    ROUNDS_1_TO_22(A, E);
    ROUND(A, E, RC[23]);
    STORE_LANES(E, s);
}

/*
 * Permute and compare lanes 0..3 with the target. Round 23 only computes
 * output row 0, and lanes 1..3 only when lane 0 already matches.
 */
static inline int permute_matches(const uint64_t s[25], const uint64_t t[4]) {
    DECLARE_LANES(A);
    DECLARE_LANES(E);
    LOAD_LANES(A, s);
    ROUNDS_1_TO_22(A, E);
    THETA(A);
    uint64_t B0 = Aba ^ Da, B1 = rol(Age ^ De, 44), B2 = rol(Aki ^ Di, 43);
    if ((B0 ^ (~B1 & B2) ^ RC[23]) != t[0]) return 0;
    uint64_t B3 = rol(Amo ^ Do, 21), B4 = rol(Asu ^ Du, 14);
    return (B1 ^ (~B2 & B3)) == t[1] && (B2 ^ (~B3 & B4)) == t[2]
        && (B3 ^ (~B4 & B0)) == t[3];
}

static inline void xor_block(uint64_t s[25], const unsigned char *block) {
    for (int i = 0; i < RATE_LANES; i++) s[i] ^= load_le(block + 8 * i);
}

/* Lay out the padded final block(s) for message tail+digits; return the block count. */
static int pad_blocks(unsigned char buf[2 * RATE], size_t len) {
    int blocks = len < RATE ? 1 : 2;
    memset(buf + len, 0, (size_t)blocks * RATE - len);
    buf[len] = 0x06;
    buf[blocks * RATE - 1] |= 0x80;
    return blocks;
}

static void absorb_whole_blocks(uint64_t s[25], const unsigned char *data, size_t len) {
    for (size_t off = 0; off + RATE <= len; off += RATE) {
        xor_block(s, data + off);
        permute(s);
    }
}

static void digest_v1(const unsigned char *data, size_t len, unsigned char out[DIGEST]) {
    uint64_t s[25] = {0};
    unsigned char buf[2 * RATE];
    size_t whole = len - len % RATE;
    absorb_whole_blocks(s, data, whole);
    memcpy(buf, data + whole, len - whole);
    pad_blocks(buf, len - whole); /* a tail < RATE always fits one block */
    xor_block(s, buf);
    permute(s);
    for (int i = 0; i < DIGEST / 8; i++) store_le(out + 8 * i, s[i]);
}

/* Write n in decimal at p; return the digit count. */
static size_t format_u64(unsigned char *p, unsigned long long n) {
    unsigned char tmp[MAX_DIGITS];
    size_t k = 0;
    do {
        tmp[k++] = (unsigned char)('0' + n % 10);
        n /= 10;
    } while (n);
    for (size_t i = 0; i < k; i++) p[i] = tmp[k - 1 - i];
    return k;
}

/* Add one to the decimal text p[0..len); return 0 when it needs another digit. */
static inline int increment_digits(unsigned char *p, size_t len) {
    for (size_t i = len; i-- > 0;) {
        if (p[i] != '9') {
            p[i]++;
            return 1;
        }
        p[i] = '0';
    }
    return 0;
}

typedef struct {
    uint64_t base[25];           /* state after the prefix's whole blocks */
    uint64_t target[4];
    unsigned char buf[2 * RATE]; /* prefix tail, nonce digits, padding */
    size_t tail;
} search_ctx;

static long long search_range(search_ctx *c, unsigned long long n, unsigned long long stop) {
    uint64_t s[25];
    size_t digits = format_u64(c->buf + c->tail, n);
    int blocks = pad_blocks(c->buf, c->tail + digits);
    for (; n < stop; n++) {
        memcpy(s, c->base, sizeof s);
        if (blocks == 2) {
            xor_block(s, c->buf);
            permute(s);
        }
        xor_block(s, c->buf + (blocks - 1) * RATE);
        if (permute_matches(s, c->target)) return (long long)n;
        if (!increment_digits(c->buf + c->tail, digits) && n + 1 < stop) {
            digits = format_u64(c->buf + c->tail, n + 1);
            blocks = pad_blocks(c->buf, c->tail + digits);
        }
    }
    return -1;
}

#if defined(__GNUC__) && defined(__x86_64__)
#define HAVE_AVX2_SEARCH 1

typedef uint64_t v4 __attribute__((vector_size(32)));

#undef LANE_T
#undef ROL
#define LANE_T v4
#define ROL(v, n) (((v) << (n)) | ((v) >> ((64 - (n)) & 63)))

/* Four states: permute all (a block that is not the last one). */
__attribute__((target("avx2"))) static void permute4(v4 s[25]) {
    DECLARE_LANES(A);
    DECLARE_LANES(E);
    LOAD_LANES(A, s);
    ROUNDS_1_TO_22(A, E);
    ROUND(A, E, RC[23]);
    STORE_LANES(E, s);
}

/* Four states: permute and return the first element matching the target, or -1. */
__attribute__((target("avx2"))) static int permute_matches4(const v4 s[25], const uint64_t t[4]) {
    DECLARE_LANES(A);
    DECLARE_LANES(E);
    LOAD_LANES(A, s);
    ROUNDS_1_TO_22(A, E);
    THETA(A);
    v4 B0 = Aba ^ Da, B1 = ROL(Age ^ De, 44), B2 = ROL(Aki ^ Di, 43);
    v4 lane0 = B0 ^ (~B1 & B2) ^ RC[23];
    if (lane0[0] != t[0] && lane0[1] != t[0] && lane0[2] != t[0] && lane0[3] != t[0]) return -1;
    v4 B3 = ROL(Amo ^ Do, 21), B4 = ROL(Asu ^ Du, 14);
    v4 lane1 = B1 ^ (~B2 & B3), lane2 = B2 ^ (~B3 & B4), lane3 = B3 ^ (~B4 & B0);
    for (int k = 0; k < 4; k++)
        if (lane0[k] == t[0] && lane1[k] == t[1] && lane2[k] == t[2] && lane3[k] == t[3]) return k;
    return -1;
}

#undef LANE_T
#undef ROL
#define LANE_T uint64_t
#define ROL rol

/* Four consecutive nonces per step; a step whose nonces differ in digit
 * count (…9999 → …10000) and the last few nonces go through search_range. */
__attribute__((target("avx2")))
static long long search_range4(search_ctx *c, unsigned long long n, unsigned long long stop) {
    unsigned char bufs[4][2 * RATE];
    v4 s[25];
    for (int k = 0; k < 4; k++) memcpy(bufs[k], c->buf, c->tail);
    for (; n + 4 <= stop; n += 4) {
        size_t digits = format_u64(bufs[0] + c->tail, n);
        int blocks = pad_blocks(bufs[0], c->tail + digits);
        if (format_u64(bufs[3] + c->tail, n + 3) != digits) {
            long long found = search_range(c, n, n + 4);
            if (found >= 0) return found;
            continue;
        }
        for (int k = 1; k < 4; k++) {
            format_u64(bufs[k] + c->tail, n + k);
            pad_blocks(bufs[k], c->tail + digits);
        }
        for (int i = 0; i < 25; i++) s[i] = (v4){c->base[i], c->base[i], c->base[i], c->base[i]};
        for (int b = 0; b < blocks; b++) {
            for (int i = 0; i < RATE_LANES; i++) {
                size_t at = (size_t)b * RATE + 8 * (size_t)i;
                s[i] ^= (v4){load_le(bufs[0] + at), load_le(bufs[1] + at),
                             load_le(bufs[2] + at), load_le(bufs[3] + at)};
            }
            if (b + 1 < blocks) permute4(s);
        }
        int k = permute_matches4(s, c->target);
        if (k >= 0) return (long long)(n + (unsigned long long)k);
    }
    return n < stop ? search_range(c, n, stop) : -1;
}

static int cpu_has_avx2(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2");
}
#else
static int cpu_has_avx2(void) { return 0; }
#endif

static int use_avx2 = 0; /* decided once, at import */

static PyObject *py_hash(PyObject *self, PyObject *arg) {
    Py_buffer data;
    unsigned char out[DIGEST];
    if (PyObject_GetBuffer(arg, &data, PyBUF_SIMPLE) < 0) return NULL;
    digest_v1(data.buf, (size_t)data.len, out);
    PyBuffer_Release(&data);
    return PyBytes_FromStringAndSize((const char *)out, DIGEST);
}

/* A nonce bound in [0, LLONG_MAX]; a larger stop is clamped (19 digits suffice). */
static int parse_bound(PyObject *obj, const char *name, int clamp, unsigned long long *out) {
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(obj, &overflow);
    if (v == -1 && PyErr_Occurred()) return -1;
    if (overflow < 0 || (!overflow && v < 0)) {
        PyErr_Format(PyExc_ValueError, "%s must be >= 0", name);
        return -1;
    }
    if (overflow && !clamp) {
        PyErr_Format(PyExc_OverflowError, "%s is too large", name);
        return -1;
    }
    *out = overflow ? (unsigned long long)LLONG_MAX : (unsigned long long)v;
    return 0;
}

/* lanes: 4 for the AVX2 search when the CPU has it, 1 for the portable one. */
static PyObject *run_search(PyObject *args, const char *format, int lanes) {
    Py_buffer prefix, target;
    PyObject *start_obj, *stop_obj;
    unsigned long long start, stop;
    search_ctx c;
    long long found;
    if (!PyArg_ParseTuple(args, format, &prefix, &target,
                          &PyLong_Type, &start_obj, &PyLong_Type, &stop_obj))
        return NULL;
    if (target.len != DIGEST) {
        PyErr_SetString(PyExc_ValueError, "target must be 32 bytes");
        goto fail;
    }
    if (parse_bound(start_obj, "start", 0, &start) < 0 || parse_bound(stop_obj, "stop", 1, &stop) < 0)
        goto fail;
    memset(&c, 0, sizeof c);
    for (int i = 0; i < 4; i++) c.target[i] = load_le((const unsigned char *)target.buf + 8 * i);
    Py_BEGIN_ALLOW_THREADS
    size_t whole = (size_t)prefix.len - (size_t)prefix.len % RATE;
    absorb_whole_blocks(c.base, prefix.buf, whole);
    c.tail = (size_t)prefix.len - whole;
    memcpy(c.buf, (const unsigned char *)prefix.buf + whole, c.tail);
#ifdef HAVE_AVX2_SEARCH
    if (lanes == 4 && start < stop)
        found = search_range4(&c, start, stop);
    else
#endif
    found = start < stop ? search_range(&c, start, stop) : -1;
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&prefix);
    PyBuffer_Release(&target);
    return PyLong_FromLongLong(found);
fail:
    PyBuffer_Release(&prefix);
    PyBuffer_Release(&target);
    return NULL;
}

static PyObject *py_search(PyObject *self, PyObject *args) {
    return run_search(args, "y*y*O!O!:search", use_avx2 ? 4 : 1);
}

static PyObject *py_search_portable(PyObject *self, PyObject *args) {
    return run_search(args, "y*y*O!O!:search_portable", 1);
}

static PyMethodDef methods[] = {
    {"deepseek_hash_v1", py_hash, METH_O,
     "deepseek_hash_v1(data) -> bytes\n\nThe 32-byte DeepSeekHashV1 digest of data."},
    {"search", py_search, METH_VARARGS,
     "search(prefix, target, start, stop) -> int\n\n"
     "First nonce in [start, stop) whose hash of prefix+decimal(nonce) is target, "
     "or -1. Releases the GIL. Four nonces at a time where the CPU has AVX2."},
    {"search_portable", py_search_portable, METH_VARARGS,
     "search_portable(prefix, target, start, stop) -> int\n\n"
     "search() on the portable single-lane path, whatever the CPU."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_ds2proxy_pow",
    "Compiled DeepSeekHashV1 and nonce search (ds2proxy's proof of work).", -1, methods,
};

/* LANES: nonces search() hashes at once (4 with AVX2, else 1). */
PyMODINIT_FUNC PyInit__ds2proxy_pow(void) {
    PyObject *m = PyModule_Create(&module);
    use_avx2 = cpu_has_avx2();
    if (m != NULL && PyModule_AddIntConstant(m, "LANES", use_avx2 ? 4 : 1) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
