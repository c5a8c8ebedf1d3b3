/* The inner loops of the corpus stage that Python and numpy cannot make fast, each called on a
 * whole text or a batch of them: walking py3langid's byte n-gram automaton over paragraphs and
 * scoring them (langid.py), the words of a document with exact ids (quality.py), the word hashes,
 * MinHash signatures and exact keys of dedup and decontamination (ngrams.py, dedup.py), and what a
 * text needs of normalisation (normalise.py). Everything around them stays in Python; each has a
 * test against the Python it replaced (tests/test_kernels.py). They hold the GIL and allocate only
 * scratch memory, so they are safe in every executor's worker. GCC or clang (their builtins).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

static int is_str(PyObject *text, const char *name) {
    if (!PyUnicode_Check(text))
        PyErr_Format(PyExc_TypeError, "%s: a str is needed", name);
    return PyUnicode_Check(text);
}

static int is_space(Py_UCS4 ch) { return Py_UNICODE_ISSPACE(ch); }  /* str.split()'s white space */

/* bit 0: re's [^\W\d_] (a letter: alphanumeric, not a decimal digit); bit 1: re's [^\W_] (alphanumeric);
 * ASCII without a lookup of Unicode's tables */
static uint8_t char_class(Py_UCS4 ch) {
    if (ch < 128)
        return ((ch | 32) >= 'a' && (ch | 32) <= 'z') ? 3 : (ch >= '0' && ch <= '9') ? 2 : 0;
    return Py_UNICODE_ISALNUM(ch) ? (Py_UNICODE_ISDECIMAL(ch) ? 2 : 3) : 0;
}

static int is_word_char(Py_UCS4 ch) { return char_class(ch) || ch == '_'; }  /* re's \w */

static int get_buffer(PyObject *obj, Py_buffer *view, Py_ssize_t itemsize, int writable, const char *name) {
    if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS | (writable ? PyBUF_WRITABLE : 0)) < 0)
        return -1;
    if (view->len % itemsize) {
        PyErr_Format(PyExc_ValueError, "%s: %zd bytes is not a whole number of %zd-byte items", name, view->len, itemsize);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

/* ---- language ID: feature counts and class scores ------------------------------------------ */

/* One text's scores from the features its walk emitted: the sum over its distinct features, in
 * ascending order, of log1p(count) * weights[feature]. `seen` is a bitmap of the features, with
 * `summary` a bitmap of its non-zero words (a hundred thousand features: reading the whole bitmap
 * per text would cost more than the walk); both, and `counts`, come back cleared. */
static void score_text(const int32_t *found, Py_ssize_t emitted, uint32_t *counts, uint64_t *seen, uint64_t *summary,
                       Py_ssize_t summary_words, const double *log1p_of, const double *weights, Py_ssize_t classes,
                       double *row) {
    for (Py_ssize_t c = 0; c < classes; c++)
        row[c] = 0.0;
    for (Py_ssize_t k = 0; k < emitted; k++) {
        int32_t f = found[k];
        __builtin_prefetch(weights + f * classes);
        counts[f]++;
        seen[f >> 6] |= 1ULL << (f & 63);
        summary[f >> 12] |= 1ULL << ((f >> 6) & 63);
    }
    for (Py_ssize_t s = 0; emitted && s < summary_words; s++) {
        while (summary[s]) {
            int64_t word = (s << 6) + __builtin_ctzll(summary[s]);
            summary[s] &= summary[s] - 1;
            while (seen[word]) {
                int64_t feature = (word << 6) + __builtin_ctzll(seen[word]);
                seen[word] &= seen[word] - 1;
                double weight = log1p_of[counts[feature]];
                counts[feature] = 0;
                const double *wf = weights + feature * classes;
                for (Py_ssize_t c = 0; c < classes; c++)
                    row[c] += weight * wf[c];
            }
        }
    }
}

#define LANES 16 /* texts walked side by side: their table reads are independent, so they overlap */

/* langid_scores(data, offsets, moves, rows, emits, weights, scores, featured)
 *   data: the texts' bytes end to end; offsets: int64 [n + 1], text i is data[offsets[i]:offsets[i + 1]]
 *   moves: uint32 [rows * 256], the state the automaton moves to from a state of row r on byte b, at r * 256 + b
 *   rows: uint16 [states], each state's row (states with the same moves share one); emits: int32 [states],
 *   the feature a state emits, or -1. The automaton starts in state 0.
 *   weights: float64 [features, classes]; scores: float64 [n, classes], written; featured: uint8 [n], written
 * Each text's score is the sum over its distinct features, in ascending order, of
 * log1p(count) * weights[feature]: the same sums, in the same order, as a CSR product of
 * py3langid's log1p feature counts with its weights, so the probabilities are the same bits. */
static PyObject *langid_scores(PyObject *self, PyObject *args) {
    PyObject *o_data, *o_offsets, *o_moves, *o_rows, *o_emits, *o_weights, *o_scores, *o_featured;
    if (!PyArg_ParseTuple(args, "OOOOOOOO", &o_data, &o_offsets, &o_moves, &o_rows, &o_emits, &o_weights, &o_scores, &o_featured))
        return NULL;
    Py_buffer data = {0}, offsets = {0}, moves = {0}, rows = {0}, emits = {0}, weights = {0}, scores = {0}, featured = {0};
    PyObject *result = NULL;
    uint64_t *seen = NULL, *summary = NULL;
    uint32_t *counts = NULL;
    double *log1p_of = NULL;
    int32_t *found = NULL;
    if (get_buffer(o_data, &data, 1, 0, "data") || get_buffer(o_offsets, &offsets, 8, 0, "offsets")
        || get_buffer(o_moves, &moves, 4, 0, "moves") || get_buffer(o_rows, &rows, 2, 0, "rows")
        || get_buffer(o_emits, &emits, 4, 0, "emits") || get_buffer(o_weights, &weights, 8, 0, "weights")
        || get_buffer(o_scores, &scores, 8, 1, "scores") || get_buffer(o_featured, &featured, 1, 1, "featured"))
        goto done;
    const uint8_t *bytes = data.buf;
    const int64_t *off = offsets.buf;
    const uint32_t *move = moves.buf;
    const uint16_t *row_of = rows.buf;
    const int32_t *emit = emits.buf;
    const double *w = weights.buf;
    double *out = scores.buf;
    uint8_t *has = featured.buf;
    Py_ssize_t n = offsets.len / 8 - 1, states = emits.len / 4;
    if (n < 1 || featured.len != n || scores.len % (8 * n)) {
        PyErr_SetString(PyExc_ValueError, "langid_scores: offsets, scores and featured disagree on the number of texts");
        goto done;
    }
    Py_ssize_t classes = scores.len / 8 / n, features = classes ? weights.len / 8 / classes : 0;
    if (classes == 0 || features * classes * 8 != weights.len || off[0] != 0 || off[n] != data.len || rows.len != states * 2 || states == 0) {
        PyErr_SetString(PyExc_ValueError, "langid_scores: the automaton, weights, scores or offsets do not fit together");
        goto done;
    }
    int64_t longest = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (off[i + 1] < off[i]) {
            PyErr_SetString(PyExc_ValueError, "langid_scores: offsets must not decrease");
            goto done;
        }
        if (off[i + 1] - off[i] > longest)
            longest = off[i + 1] - off[i];
    }
    Py_ssize_t words = (features + 63) / 64;
    Py_ssize_t summary_words = (words + 63) / 64;
    seen = calloc(words, sizeof *seen);  /* which features the text emits: read back in ascending order */
    summary = calloc(summary_words, sizeof *summary);
    counts = calloc(features, sizeof *counts);
    log1p_of = malloc((longest + 1) * sizeof *log1p_of);
    found = malloc(LANES * (longest + 1) * sizeof *found);
    if (!seen || !summary || !counts || !log1p_of || !found) {
        PyErr_NoMemory();
        goto done;
    }
    for (int64_t k = 0; k <= longest; k++)
        log1p_of[k] = log1p((double)k);
    Py_ssize_t entries = moves.len / 4;
    struct { Py_ssize_t text, emitted; int64_t at, row; } lane[LANES];
    Py_ssize_t next = 0, active = 0;
    for (; active < LANES && next < n; active++)
        lane[active].text = next++, lane[active].at = off[lane[active].text], lane[active].row = row_of[0], lane[active].emitted = 0;
    while (active) {
        for (Py_ssize_t l = 0; l < active; l++) {
            int32_t *mine = found + l * (longest + 1);
            if (lane[l].at == off[lane[l].text + 1]) {  /* this text is read: score it, take the next */
                Py_ssize_t t = lane[l].text;
                score_text(mine, lane[l].emitted, counts, seen, summary, summary_words, log1p_of, w, classes, out + t * classes);
                has[t] = lane[l].emitted > 0;
                if (next < n) {
                    lane[l].text = next++, lane[l].at = off[lane[l].text], lane[l].row = row_of[0], lane[l].emitted = 0;
                } else {
                    lane[l] = lane[--active];
                    memmove(mine, found + active * (longest + 1), lane[l].emitted * sizeof *found);  /* the same lane when l == active */
                    l--;
                }
                continue;
            }
            int64_t index = (lane[l].row << 8) + bytes[lane[l].at++];
            uint32_t state = index < entries ? move[index] : (uint32_t)states;
            if (state >= states) {
                PyErr_SetString(PyExc_ValueError, "langid_scores: the automaton left its table");
                goto done;
            }
            int32_t feature = emit[state];
            lane[l].row = row_of[state];
            mine[lane[l].emitted] = feature;  /* kept only if a feature: no branch to mispredict */
            lane[l].emitted += (uint32_t)feature < (uint32_t)features;
        }
    }
    result = Py_NewRef(Py_None);
done:
    free(seen);
    free(summary);
    free(counts);
    free(log1p_of);
    free(found);
    Py_buffer *views[] = {&data, &offsets, &moves, &rows, &emits, &weights, &scores, &featured};
    for (size_t k = 0; k < sizeof views / sizeof *views; k++)
        if (views[k]->obj)
            PyBuffer_Release(views[k]);
    return result;
}

/* ---- normalisation: what needs rewriting ------------------------------------------------------ */

static int mojibake_second(Py_UCS4 ch) {  /* what a UTF-8 continuation byte looks like once decoded as cp1252 */
    return (ch >= 0x80 && ch <= 0xbf) || (ch >= 0x2018 && ch <= 0x203a) || ch == 0x20ac || ch == 0x152 || ch == 0x153
        || ch == 0x160 || ch == 0x161 || ch == 0x178 || ch == 0x17d || ch == 0x17e || ch == 0x192 || ch == 0x2c6
        || ch == 0x2dc || ch == 0x2122;
}

/* tidy_flags(text) -> int: bit 0, a mojibake hint (a Latin-1 lead character U+00C2..U+00F4, then a
 * mojibake_second); bit 1, a control character (U+0000..U+001F but tab, newline and carriage return,
 * U+007F, U+FEFF). Two regular-expression searches of fournil/corpus/normalise.py in one pass. */
static PyObject *tidy_flags(PyObject *self, PyObject *text) {
    if (!is_str(text, "tidy_flags"))
        return NULL;
    int kind = PyUnicode_KIND(text), flags = 0;
    const void *units = PyUnicode_DATA(text);
    Py_ssize_t size = PyUnicode_GET_LENGTH(text);
    for (Py_ssize_t i = 0; i < size && flags != 3; i++) {
        Py_UCS4 ch = PyUnicode_READ(kind, units, i);
        if (ch < 0x20)
            flags |= (ch != '\t' && ch != '\n' && ch != '\r') << 1;
        else if (ch == 0x7f || ch == 0xfeff)
            flags |= 2;
        else if (ch >= 0xc2 && ch <= 0xf4 && i + 1 < size && mojibake_second(PyUnicode_READ(kind, units, i + 1)))
            flags |= 1;
    }
    return PyLong_FromLong(flags);
}

/* ---- near dedup and decontamination: word hashes, MinHash signatures ---------------------------- */

static uint64_t mix64(uint64_t h) {  /* splitmix64's finaliser: every input bit reaches every output bit */
    h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ULL;
    h = (h ^ (h >> 27)) * 0x94d049bb133111ebULL;
    return h ^ (h >> 31);
}


/* collapsed_hash(text) -> a 64-bit hash of the text with every run of white space made one space and
 * none at either end (" ".join(text.split())), without making that string: FNV-1a over its code
 * points, then mix64. Exact dedup's key, of the lower-cased text. */
static PyObject *collapsed_hash(PyObject *self, PyObject *text) {
    if (!is_str(text, "collapsed_hash"))
        return NULL;
    int kind = PyUnicode_KIND(text);
    const void *units = PyUnicode_DATA(text);
    Py_ssize_t size = PyUnicode_GET_LENGTH(text);
    uint64_t h = 0xcbf29ce484222325ULL;
    int words = 0, gap = 0;
    for (Py_ssize_t i = 0; i < size; i++) {
        Py_UCS4 ch = PyUnicode_READ(kind, units, i);
        if (Py_UNICODE_ISSPACE(ch)) {
            gap = words;
            continue;
        }
        if (gap)
            h = (h ^ ' ') * 0x100000001b3ULL;
        h = (h ^ ch) * 0x100000001b3ULL;
        words = 1, gap = 0;
    }
    return PyLong_FromUnsignedLongLong(mix64(h));
}

/* word_hashes(text) -> uint64 per run of word characters (str.isalnum or "_", re's \w), as bytes:
 * mix64 of the polynomial sum over the run's code points p_j of (p_j + 1) * BASE**j (modulo 2**64),
 * the hash fournil/corpus/ngrams.py defines (the caller lower-cases the text). */
static PyObject *word_hashes(PyObject *self, PyObject *text) {
    if (!is_str(text, "word_hashes"))
        return NULL;
    const uint64_t base = 0x100000001B3ULL;
    int kind = PyUnicode_KIND(text);
    const void *units = PyUnicode_DATA(text);
    Py_ssize_t size = PyUnicode_GET_LENGTH(text), n = 0;
    uint64_t *hashes = PyMem_Malloc((size / 2 + 1) * sizeof *hashes);  /* runs are separated: at most half the text, rounded up */
    if (!hashes)
        return PyErr_NoMemory();
    for (Py_ssize_t i = 0; i < size;) {
        Py_UCS4 ch = PyUnicode_READ(kind, units, i);
        if (!is_word_char(ch)) {
            i++;
            continue;
        }
        uint64_t h = 0, power = 1;
        for (; i < size && is_word_char(ch = PyUnicode_READ(kind, units, i)); i++) {
            h += ((uint64_t)ch + 1) * power;
            power *= base;
        }
        hashes[n++] = mix64(h);
    }
    PyObject *result = PyBytes_FromStringAndSize((const char *)hashes, n * 8);
    PyMem_Free(hashes);
    return result;
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
/* 64-bit multiplies vectorise only with AVX-512 (vpmullq): a second build of the loop for processors that have it */
__attribute__((target_clones("arch=x86-64-v4", "default")))
#endif
static void lower_signature(const uint64_t *x, Py_ssize_t n, const uint64_t *a, const uint64_t *b, uint64_t *sig,
                            Py_ssize_t hashes) {
    for (Py_ssize_t i = 0; i < n; i++)
        for (Py_ssize_t k = 0; k < hashes; k++) {
            uint64_t v = a[k] * x[i] + b[k];
            sig[k] = v < sig[k] ? v : sig[k];
        }
}

/* minhash(shingles, a, b, signature): signature[k] = min over the shingles x of a[k] * x + b[k]
 * (modulo 2**64), lowered in place. One pass over the shingles with the signature in cache; numpy
 * needs a [shingles, hashes] block and three passes over it. */
static PyObject *minhash(PyObject *self, PyObject *args) {
    PyObject *o_shingles, *o_a, *o_b, *o_signature;
    if (!PyArg_ParseTuple(args, "OOOO", &o_shingles, &o_a, &o_b, &o_signature))
        return NULL;
    Py_buffer shingles = {0}, a = {0}, b = {0}, signature = {0};
    PyObject *result = NULL;
    if (get_buffer(o_shingles, &shingles, 8, 0, "shingles") || get_buffer(o_a, &a, 8, 0, "a")
        || get_buffer(o_b, &b, 8, 0, "b") || get_buffer(o_signature, &signature, 8, 1, "signature"))
        goto done;
    if (a.len != b.len || a.len != signature.len) {
        PyErr_SetString(PyExc_ValueError, "minhash: a, b and signature must have one length");
        goto done;
    }
    lower_signature(shingles.buf, shingles.len / 8, a.buf, b.buf, signature.buf, a.len / 8);
    result = Py_NewRef(Py_None);
done:
    Py_buffer *views[] = {&shingles, &a, &b, &signature};
    for (size_t k = 0; k < sizeof views / sizeof *views; k++)
        if (views[k]->obj)
            PyBuffer_Release(views[k]);
    return result;
}

/* ---- quality: exact word ids ---------------------------------------------------------------- */


static uint64_t span_hash(const Py_UCS4 *points, Py_ssize_t length) {
    uint64_t h = 0xcbf29ce484222325ULL ^ (uint64_t)length;  /* FNV-1a over the code points */
    for (Py_ssize_t i = 0; i < length; i++)
        h = (h ^ points[i]) * 0x100000001b3ULL;
    return mix64(h);
}

/* word_ids(text, by_chars, min_words) -> None when the text has fewer than min_words words, else
 * five byte strings, read as numpy arrays by fournil/corpus/quality.py:
 *   per word: its id (int64, the index of the word's first occurrence: exact, no hash to collide)
 *     and its length in code points (int64);
 *   per distinct word, in order of first occurrence: its first index (int64), its classes (uint8,
 *     char_class of its characters or-ed) and a 64-bit hash of it (uint64, span_hash: the same for
 *     the same word in any text).
 * Words are str.split()'s (runs of non-white space), or each non-space character with by_chars.
 * No Python object is made per word: that, not the splitting, is what Python's own loop costs. */
static PyObject *word_ids(PyObject *self, PyObject *args) {
    PyObject *text;
    int by_chars;
    Py_ssize_t min_words;
    if (!PyArg_ParseTuple(args, "Upn", &text, &by_chars, &min_words))
        return NULL;
    Py_ssize_t size = PyUnicode_GET_LENGTH(text), n = 0;
    Py_UCS4 *points = PyUnicode_AsUCS4Copy(text);  /* one layout whatever the string's kind */
    if (!points)
        return NULL;
    for (Py_ssize_t i = 0; i < size; i++)  /* count first: most short documents stop here */
        n += !is_space(points[i]) && (by_chars || i == 0 || is_space(points[i - 1]));
    if (n < min_words || n == 0) {
        PyMem_Free(points);
        Py_RETURN_NONE;
    }
    PyObject *result = NULL;
    Py_ssize_t slots = 1;
    while (slots < 2 * n)
        slots <<= 1;
    uint32_t *table = n < UINT32_MAX ? calloc(slots, sizeof *table) : NULL;  /* 1 + a distinct word's number; 0: empty */
    int64_t *ids = malloc(n * sizeof *ids), *lengths = malloc(n * sizeof *lengths);
    int64_t *firsts = malloc(n * sizeof *firsts), *starts = malloc(n * sizeof *starts);
    uint64_t *hashes = malloc(n * sizeof *hashes);
    uint8_t *classes = malloc(n);
    if (!table || !ids || !lengths || !firsts || !starts || !hashes || !classes) {
        PyErr_NoMemory();
        goto done;
    }
    Py_ssize_t distinct = 0, i = 0;
    for (Py_ssize_t word = 0; word < n; word++) {
        while (is_space(points[i]))
            i++;
        Py_ssize_t start = i++;
        if (!by_chars)
            while (i < size && !is_space(points[i]))
                i++;
        Py_ssize_t length = i - start;
        uint64_t hash = span_hash(points + start, length);
        for (Py_ssize_t slot = (Py_ssize_t)(hash & (uint64_t)(slots - 1));; slot = (slot + 1) & (slots - 1)) {
            Py_ssize_t d = (Py_ssize_t)table[slot] - 1;
            if (d < 0) {  /* a new word */
                uint8_t cls = 0;
                for (Py_ssize_t k = start; k < i; k++)
                    cls |= char_class(points[k]);
                table[slot] = (uint32_t)(distinct + 1);
                firsts[distinct] = word, starts[distinct] = start, hashes[distinct] = hash, classes[distinct] = cls;
                ids[word] = word;
                distinct++;
                break;
            }
            if (hashes[d] == hash && lengths[firsts[d]] == length
                && !memcmp(points + starts[d], points + start, length * sizeof *points)) {
                ids[word] = firsts[d];
                break;
            }
        }
        lengths[word] = length;
    }
    result = Py_BuildValue("(y#y#y#y#y#)", (const char *)ids, n * 8, (const char *)lengths, n * 8,
                           (const char *)firsts, distinct * 8, (const char *)classes, distinct,
                           (const char *)hashes, distinct * 8);
done:
    PyMem_Free(points);
    free(table);
    free(ids);
    free(lengths);
    free(firsts);
    free(starts);
    free(hashes);
    free(classes);
    return result;
}

/* word_count(text) -> len(text.split()), without making the list */
static PyObject *word_count(PyObject *self, PyObject *text) {
    if (!is_str(text, "word_count"))
        return NULL;
    int kind = PyUnicode_KIND(text);
    const void *units = PyUnicode_DATA(text);
    Py_ssize_t size = PyUnicode_GET_LENGTH(text), n = 0;
    int space = 1;
    for (Py_ssize_t i = 0; i < size; i++) {
        int now = is_space(PyUnicode_READ(kind, units, i));
        n += space && !now;
        space = now;
    }
    return PyLong_FromSsize_t(n);
}

static PyMethodDef methods[] = {
    {"collapsed_hash", collapsed_hash, METH_O, "A hash of \" \".join(text.split()), without making it: see _kernels.c."},
    {"tidy_flags", tidy_flags, METH_O, "Whether a text shows a mojibake hint (1) or a control character (2): see _kernels.c."},
    {"word_hashes", word_hashes, METH_O, "A stable 64-bit hash per run of word characters: see _kernels.c."},
    {"minhash", minhash, METH_VARARGS, "Lower a MinHash signature by a text's shingles: see _kernels.c."},
    {"word_count", word_count, METH_O, "len(text.split()), without making the list."},
    {"langid_scores", langid_scores, METH_VARARGS, "py3langid's class scores of many texts: see _kernels.c."},
    {"word_ids", word_ids, METH_VARARGS, "Exact word ids and lengths, and each distinct word's first index, classes and hash: see _kernels.c."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "fournil.corpus._kernels", NULL, -1, methods};

PyMODINIT_FUNC PyInit__kernels(void) { return PyModule_Create(&module); }
