// Fused CPU update of a DataMapRecorder state for binary tasks (loaded by stgmtl/record/native.py).
//
// Plain C++ behind a C interface (no torch headers: it builds in about a second and does not
// depend on the torch version). One call checks a batch and, only if every checked value is
// good, adds it to the state in one pass over each batch row:
//
//   p = sigmoid(z) where y = 1, sigmoid(-z) where y = 0   (in z's precision: float32 or float64)
//   s1 += p;  s2 += p * p;  correct += ((z > 0) == y);  targets = y;  seen += 1
//   where the mask is False: missing += 1 and nothing else changes.
//
// Rows whose state row is negative are skipped (samples outside probe_indices, invalid rows).
// Threads split the task columns, and every thread walks the rows in batch order, so each state
// element is updated by one thread in batch order: the result does not depend on the number of
// threads, and duplicate sample ids accumulate as a sequential loop would.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <thread>
#include <type_traits>
#include <vector>

namespace {

// exp(x) in float64 without branches, so that compilers vectorise the loops that call it:
// x = n ln2 + r with |r| <= ln2 / 2, exp(r) by its Taylor series to r^13 (truncation below
// 1e-17 relative), times 2^n built in the exponent bits. x is clamped to [-708, 709], where
// exp stays a normal float64 (the sigmoid needs no more).
inline double exp_f64(double x) {
  x = x < -708.0 ? -708.0 : x;
  x = x > 709.0 ? 709.0 : x;
  const double shift = 6755399441055744.0;  // 1.5 * 2^52: adding it rounds to an integer
  const double nf = x * 1.4426950408889634 + shift;
  const double n = nf - shift;
  const double r = (x - n * 0.6931471803691238) - n * 1.9082149292705877e-10;
  double p = 1.0 / 6227020800.0;
  p = p * r + 1.0 / 479001600.0;
  p = p * r + 1.0 / 39916800.0;
  p = p * r + 1.0 / 3628800.0;
  p = p * r + 1.0 / 362880.0;
  p = p * r + 1.0 / 40320.0;
  p = p * r + 1.0 / 5040.0;
  p = p * r + 1.0 / 720.0;
  p = p * r + 1.0 / 120.0;
  p = p * r + 1.0 / 24.0;
  p = p * r + 1.0 / 6.0;
  p = p * r + 0.5;
  p = p * r + 1.0;
  p = p * r + 1.0;
  int64_t bits;
  std::memcpy(&bits, &nf, sizeof bits);  // the low bits of nf hold n
  bits = (bits - 0x4338000000000000LL + 1023) << 52;
  double scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

// exp(x) in float32, the same way: x = n ln2 + r, exp(r) by its Taylor series to r^7
// (truncation below 6e-9 relative, under half a float32 ulp), times 2^n. x is clamped to
// [-87, 88], where exp stays a normal float32. Used for float32 (and narrower) logits.
inline float exp_f32(float x) {
  x = x < -87.0f ? -87.0f : x;
  x = x > 88.0f ? 88.0f : x;
  const float shift = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  const float nf = x * 1.44269504f + shift;
  const float n = nf - shift;
  const float r = (x - n * 0.693145751953125f) - n * 1.428606765330187e-06f;
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  int32_t bits;
  std::memcpy(&bits, &nf, sizeof bits);  // the low bits of nf hold n
  bits = (bits - 0x4B400000 + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

inline double exp_c(double x) { return exp_f64(x); }
inline float exp_c(float x) { return exp_f32(x); }

// The type p is computed in: float64 for float64 logits, float32 for float32 logits (whose
// own rounding, 6e-8 relative, already exceeds a float32 sigmoid's error).
template <typename Z>
using compute_t = typename std::conditional<std::is_same<Z, double>::value, double, float>::type;

// 1.0 for a positive label, else 0.0 (values are 0 or 1 once checked); integer labels are
// compared as integers (AVX2 has no int64 -> double conversion).
template <typename Y>
inline double as_label(Y y) {
  if constexpr (std::is_integral<Y>::value) {
    return y > 0 ? 1.0 : 0.0;
  } else {
    return y > Y(0.5) ? 1.0 : 0.0;
  }
}

// Nonzero when a label is other than 0 and 1 (or NaN).
template <typename Y>
inline int not_binary(Y y) {
  if constexpr (std::is_integral<Y>::value) {
    return (y != 0 && y != 1) ? 1 : 0;
  } else {
    return (y - y * y != Y(0)) ? 1 : 0;  // 0 for 0 and 1, nonzero or NaN otherwise
  }
}

// Whether any kept logit is NaN or inf (bit 0) and any observed target is other than 0 and 1
// (bit 1): integer OR-reductions, which compilers vectorise.
template <typename Z, typename Y>
int check_rows(const Z* z, const Y* y, const uint8_t* mask, const int64_t* rows, int64_t B,
               int64_t T, int64_t t0, int64_t t1) {
  int nonfinite = 0, bad = 0;
  for (int64_t i = 0; i < B; ++i) {
    if (rows[i] < 0) continue;
    const Z* __restrict zi = z + i * T;
    const Y* __restrict yi = y + i * T;
    for (int64_t t = t0; t < t1; ++t) {
      const Z v = zi[t];  // in the logits' own type: twice the lanes of float64 for float32
      nonfinite |= (v - v != Z(0)) ? 1 : 0;  // inf - inf and NaN - NaN are NaN
    }
    if (mask == nullptr) {
      for (int64_t t = t0; t < t1; ++t) bad |= not_binary(yi[t]);
    } else {
      const uint8_t* __restrict mi = mask + i * T;
      for (int64_t t = t0; t < t1; ++t) bad |= mi[t] ? not_binary(yi[t]) : 0;
    }
  }
  return nonfinite | (bad << 1);
}

// For the message of a refused batch (slow path): min / max of the kept logits and of the
// observed targets, and whether a target is other than 0 and 1 (NaN logits give NaN bounds).
template <typename Z, typename Y>
void describe_rows(const Z* z, const Y* y, const uint8_t* mask, const int64_t* rows, int64_t B,
                   int64_t T, int flags, double* out) {
  const double inf = std::numeric_limits<double>::infinity();
  double zmin = inf, zmax = -inf, ymin = inf, ymax = -inf;
  for (int64_t i = 0; i < B; ++i) {
    if (rows[i] < 0) continue;
    for (int64_t t = 0; t < T; ++t) {
      const double v = static_cast<double>(z[i * T + t]);
      zmin = std::fmin(zmin, v);
      zmax = std::fmax(zmax, v);
      if (mask && !mask[i * T + t]) continue;
      const double w = static_cast<double>(y[i * T + t]);
      ymin = std::fmin(ymin, w);
      ymax = std::fmax(ymax, w);
    }
  }
  if (flags & 1) zmin = zmax = std::numeric_limits<double>::quiet_NaN();
  out[0] = zmin;
  out[1] = zmax;
  out[2] = ymin;
  out[3] = ymax;
  out[4] = (flags & 2) ? 1.0 : 0.0;
}

// Columns per tile: a tile's converted inputs (at most 12 bytes per column) stay in the L1 cache.
constexpr int64_t kTile = 1024;

// The dtype-independent core of the update on one tile: u = -z where y = 1 and z where y = 0
// (so p = sigmoid(-u) = 1 / (1 + exp(u)), in C), ok = 1 for a right prediction, lab the label,
// on = 1 where the label is observed (always 1 without a mask). Sums are float64 whatever C.
template <typename C>
inline void add_tile(const C* __restrict u, const int32_t* __restrict ok,
                     const int8_t* __restrict lab, int64_t n, double* __restrict a,
                     double* __restrict b, int32_t* __restrict c, int8_t* __restrict g) {
  for (int64_t t = 0; t < n; ++t) {
    const double p = static_cast<double>(C(1) / (C(1) + exp_c(u[t])));
    a[t] += p;
    b[t] += p * p;
    c[t] += ok[t];
    g[t] = lab[t];
  }
}

template <typename C>
inline void add_tile_masked(const C* __restrict u, const int32_t* __restrict ok,
                            const int8_t* __restrict lab, const uint8_t* __restrict on, int64_t n,
                            double* __restrict a, double* __restrict b, int32_t* __restrict c,
                            int8_t* __restrict g, int32_t* __restrict m) {
  for (int64_t t = 0; t < n; ++t) {
    const C w = on[t] ? C(1) : C(0);
    const double p = static_cast<double>(w / (C(1) + exp_c(u[t])));
    a[t] += p;
    b[t] += p * p;
    c[t] += on[t] ? ok[t] : 0;
  }
  for (int64_t t = 0; t < n; ++t) {  // keep the larger target where observed (as the torch path)
    const int8_t old = g[t];
    const int8_t top = lab[t] > old ? lab[t] : old;
    g[t] = on[t] ? top : old;
    m[t] += on[t] ? 0 : 1;
  }
}

template <typename Z, typename Y>
void add_rows(const Z* z, const Y* y, const uint8_t* mask, const int64_t* rows, int64_t B,
              int64_t T, int64_t t0, int64_t t1, double* s1, double* s2, int32_t* correct,
              int8_t* targets, int32_t* missing) {
  using C = compute_t<Z>;
  alignas(64) C u[kTile];
  alignas(64) int32_t ok[kTile];
  alignas(64) int8_t lab[kTile];
  for (int64_t i = 0; i < B; ++i) {
    const int64_t r = rows[i];
    if (r < 0) continue;
    for (int64_t j0 = t0; j0 < t1; j0 += kTile) {
      const int64_t n = (t1 - j0) < kTile ? (t1 - j0) : kTile;
      const Z* __restrict zi = z + i * T + j0;
      const Y* __restrict yi = y + i * T + j0;
      for (int64_t t = 0; t < n; ++t) {  // convert: the only dtype-dependent loop
        const C v = static_cast<C>(zi[t]);
        const C yv = static_cast<C>(as_label(yi[t]));
        u[t] = v * (C(1) - C(2) * yv);
        ok[t] = ((v > C(0)) == (yv > C(0.5))) ? 1 : 0;
        lab[t] = static_cast<int8_t>(yv);
      }
      const int64_t at = r * T + j0;
      if (mask == nullptr) {
        add_tile(u, ok, lab, n, s1 + at, s2 + at, correct + at, targets + at);
      } else {
        add_tile_masked(u, ok, lab, mask + i * T + j0, n, s1 + at, s2 + at, correct + at,
                        targets + at, missing + at);
      }
    }
  }
}

// Run fn(t0, t1) over [0, T) split into `threads` column ranges (at least `grain` columns each).
template <typename Fn>
void for_columns(int64_t T, int threads, int64_t grain, Fn fn) {
  int64_t parts = threads < 1 ? 1 : threads;
  if (parts > T / grain) parts = T / grain > 1 ? T / grain : 1;
  if (parts <= 1) {
    fn(0, T, 0);
    return;
  }
  std::vector<std::thread> pool;
  const int64_t step = (T + parts - 1) / parts;
  for (int64_t p = 1; p < parts; ++p) {
    const int64_t t0 = p * step, t1 = (p + 1) * step < T ? (p + 1) * step : T;
    pool.emplace_back([=] { fn(t0, t1, p); });
  }
  fn(0, step, 0);
  for (auto& th : pool) th.join();
}

template <typename Z, typename Y>
int run(const void* zv, const void* yv, const uint8_t* mask, const int64_t* rows, int64_t B,
        int64_t T, int64_t R, double* s1, double* s2, int32_t* correct, int8_t* targets, int32_t* missing,
        int64_t* seen, int validate, int threads, double* out) {
  const Z* z = static_cast<const Z*>(zv);
  const Y* y = static_cast<const Y*>(yv);
  const int64_t grain = 2048;
  for (int64_t i = 0; i < B; ++i) {  // always: a row out of range would write out of bounds
    if (rows[i] >= R) {
      out[0] = static_cast<double>(rows[i]);
      return 2;
    }
  }
  if (validate) {
    std::vector<int> parts(threads < 1 ? 1 : threads, 0);
    for_columns(T, threads, grain, [&](int64_t t0, int64_t t1, int64_t p) {
      parts[p] = check_rows(z, y, mask, rows, B, T, t0, t1);
    });
    int flags = 0;
    for (int f : parts) flags |= f;
    if (flags != 0) {
      describe_rows(z, y, mask, rows, B, T, flags, out);
      return 1;  // refused: nothing written
    }
  }
  for (int64_t i = 0; i < B; ++i)
    if (rows[i] >= 0) seen[rows[i]] += 1;
  for_columns(T, threads, grain, [&](int64_t t0, int64_t t1, int64_t) {
    add_rows(z, y, mask, rows, B, T, t0, t1, s1, s2, correct, targets, missing);
  });
  return 0;
}

template <typename Z>
int dispatch_y(int ycode, const void* z, const void* y, const uint8_t* mask, const int64_t* rows,
               int64_t B, int64_t T, int64_t R, double* s1, double* s2, int32_t* correct, int8_t* targets,
               int32_t* missing, int64_t* seen, int validate, int threads, double* out) {
  switch (ycode) {
    case 0:
      return run<Z, float>(z, y, mask, rows, B, T, R, s1, s2, correct, targets, missing, seen,
                           validate, threads, out);
    case 1:
      return run<Z, double>(z, y, mask, rows, B, T, R, s1, s2, correct, targets, missing, seen,
                            validate, threads, out);
    case 2:
      return run<Z, uint8_t>(z, y, mask, rows, B, T, R, s1, s2, correct, targets, missing, seen,
                             validate, threads, out);
    case 3:
      return run<Z, int8_t>(z, y, mask, rows, B, T, R, s1, s2, correct, targets, missing, seen,
                            validate, threads, out);
    case 4:
      return run<Z, int32_t>(z, y, mask, rows, B, T, R, s1, s2, correct, targets, missing, seen,
                             validate, threads, out);
    case 5:
      return run<Z, int64_t>(z, y, mask, rows, B, T, R, s1, s2, correct, targets, missing, seen,
                             validate, threads, out);
    default:
      return -1;
  }
}


// ---------------------------------------------------------------------------------------------
// Compact layout (stgmtl/record/compact.py): one uint64 word per cell,
//   bit 63 target (1 once a positive label was observed), bits 29..62 S2 = sum q^2,
//   bits 8..28 S1 = sum q, bits 0..7 right predictions,  q = floor(p * 8191 + 1/2) in [0, 8191].
// One pass over the inputs both checks and adds (the check is fused into the update); a refused
// batch is then undone exactly: every change is an addition modulo 2^64 (setting the target bit
// adds 2^63 where it was clear, and those flips are kept in a bitmap, written only for tiles
// where a bit was set), so subtracting the same increments, computed again by the same code,
// restores every word bit for bit.

constexpr int64_t kMaxUpdates = 255;

// The word increments of one tile, from its inputs read once (0 where the label is masked),
// pos = 1 where an observed label is positive, and the check flags of the tile (bit 0 a
// non-finite logit, bit 1 a target other than 0 and 1). Not inlined, so that the update and
// its rollback run the same machine code on the same values: identical increments.
template <typename Z, typename Y, typename C, bool Masked>
__attribute__((noinline)) int tile_increments(const Z* __restrict zi, const Y* __restrict yi,
                                              const uint8_t* __restrict mi, int64_t n,
                                              uint64_t* __restrict inc,
                                              uint8_t* __restrict pos) {
  int nonfinite = 0, bad = 0;
  for (int64_t t = 0; t < n; ++t) {
    const Z v0 = zi[t];
    nonfinite |= (v0 - v0 != Z(0)) ? 1 : 0;
    const C v = static_cast<C>(v0);
    const C yv = static_cast<C>(as_label(yi[t]));
    const C u = v * (C(1) - C(2) * yv);
    const C p = C(1) / (C(1) + exp_c(u));
    C x = p * C(8191) + C(0.5);
    x = x > C(0) ? x : C(0);  // NaN becomes 0: defined, and the same both times
    x = x < C(8191) ? x : C(8191);
    const uint32_t q = static_cast<uint32_t>(static_cast<int32_t>(x));
    const uint32_t ok = ((v > C(0)) == (yv > C(0.5))) ? 1 : 0;
    // q * q < 2^26 in 32 bits (AVX2 has no 64-bit multiply), then widened into the word
    const uint64_t w = static_cast<uint64_t>(ok + (q << 8)) + (static_cast<uint64_t>(q * q) << 29);
    if constexpr (Masked) {
      inc[t] = mi[t] ? w : 0;
      pos[t] = mi[t] ? static_cast<uint8_t>(yv) : 0;
      bad |= mi[t] ? not_binary(yi[t]) : 0;
    } else {
      inc[t] = w;
      pos[t] = static_cast<uint8_t>(yv);
      bad |= not_binary(yi[t]);
    }
  }
  return nonfinite | (bad << 1);
}

// Add (sign = +1) or undo (sign = -1) one tile. flips: this tile's bitmap words (bit j of word
// k for column 64k + j) and *any whether it holds any flip: written when adding (the bitmap
// only when a target bit was set, rare after a sample's first epoch), read when undoing.
inline void apply_tile(const uint64_t* __restrict inc, const uint8_t* __restrict pos,
                       const uint8_t* __restrict mi, int64_t n, int sign,
                       uint64_t* __restrict word, uint8_t* __restrict missing,
                       uint64_t* __restrict flips, uint8_t* __restrict any) {
  if (sign > 0) {
    alignas(64) uint8_t flip[kTile];
    uint64_t seen_flip = 0;
    for (int64_t t = 0; t < n; ++t) {
      const uint64_t w = word[t] + inc[t];
      const uint64_t f = static_cast<uint64_t>(pos[t]) & ~(w >> 63);
      word[t] = w | (f << 63);
      flip[t] = static_cast<uint8_t>(f);
      seen_flip |= f;
    }
    *any = seen_flip ? 1 : 0;
    if (seen_flip) {
      for (int64_t k = 0; k * 64 < n; ++k) {
        uint64_t bits = 0;
        const int64_t m = (n - k * 64) < 64 ? (n - k * 64) : 64;
        for (int64_t j = 0; j < m; ++j) bits |= static_cast<uint64_t>(flip[k * 64 + j]) << j;
        flips[k] = bits;
      }
    }
  } else if (*any) {
    for (int64_t t = 0; t < n; ++t) {
      const uint64_t f = (flips[t >> 6] >> (t & 63)) & 1;
      word[t] = word[t] - (f << 63) - inc[t];
    }
  } else {
    for (int64_t t = 0; t < n; ++t) word[t] -= inc[t];
  }
  if (missing != nullptr) {
    for (int64_t t = 0; t < n; ++t)
      missing[t] = static_cast<uint8_t>(missing[t] + (mi[t] ? 0 : sign));
  }
}

// One pass over rows [all] x columns [t0, t1): add (sign +1) or undo (sign -1). Returns flags.
// flips holds B x (W bitmap words + one any-flag byte per tile, packed in words after them).
template <typename Z, typename Y>
int compact_rows(const Z* z, const Y* y, const uint8_t* mask, const int64_t* rows, int64_t B,
                 int64_t T, int64_t t0, int64_t t1, int sign, uint64_t* words, uint8_t* missing,
                 uint64_t* flips) {
  using C = compute_t<Z>;
  alignas(64) uint8_t pos[kTile];
  alignas(64) uint64_t inc[kTile];
  const int64_t W = (T + 63) / 64;
  uint8_t* any = reinterpret_cast<uint8_t*>(flips + B * W);
  const int64_t tiles = (T + kTile - 1) / kTile;
  int flags = 0;
  for (int64_t i = 0; i < B; ++i) {
    const int64_t r = rows[i];
    if (r < 0) continue;
    for (int64_t j0 = t0; j0 < t1; j0 += kTile) {
      const int64_t n = (t1 - j0) < kTile ? (t1 - j0) : kTile;
      const uint8_t* mi = mask ? mask + i * T + j0 : nullptr;
      if (mi == nullptr) {
        flags |= tile_increments<Z, Y, C, false>(z + i * T + j0, y + i * T + j0, mi, n, inc, pos);
      } else {
        flags |= tile_increments<Z, Y, C, true>(z + i * T + j0, y + i * T + j0, mi, n, inc, pos);
      }
      apply_tile(inc, pos, mi, n, sign, words + r * T + j0,
                 missing ? missing + r * T + j0 : nullptr, flips + i * W + j0 / 64,
                 any + i * tiles + j0 / kTile);
    }
  }
  return flags;
}

// Like for_columns, with column ranges starting at multiples of kTile (whole bitmap words).
template <typename Fn>
void for_tiles(int64_t T, int threads, Fn fn) {
  int64_t parts = threads < 1 ? 1 : threads;
  const int64_t tiles = (T + kTile - 1) / kTile;
  if (parts > tiles) parts = tiles > 1 ? tiles : 1;
  const int64_t step = ((tiles + parts - 1) / parts) * kTile;
  std::vector<std::thread> pool;
  for (int64_t p = 1; p < parts && p * step < T; ++p) {
    const int64_t a = p * step, b = (p + 1) * step < T ? (p + 1) * step : T;
    pool.emplace_back([=] { fn(a, b, p); });
  }
  fn(0, step < T ? step : T, 0);
  for (auto& th : pool) th.join();
}

template <typename Z, typename Y>
int run_compact(const void* zv, const void* yv, const uint8_t* mask, const int64_t* rows,
                int64_t B, int64_t T, int64_t R, uint64_t* words, uint8_t* missing,
                int64_t* seen, const int64_t* base, uint64_t* flips, int validate, int threads,
                double* out) {
  const Z* z = static_cast<const Z*>(zv);
  const Y* y = static_cast<const Y*>(yv);
  for (int64_t i = 0; i < B; ++i) {  // always: a row out of range would write out of bounds
    if (rows[i] >= R) {
      out[0] = static_cast<double>(rows[i]);
      return 2;
    }
  }
  int64_t top = 0;
  for (int64_t i = 0; i < B; ++i) {
    if (rows[i] < 0) continue;
    const int64_t c = ++seen[rows[i]] + (base ? base[rows[i]] : 0);
    top = c > top ? c : top;
  }
  if (top > kMaxUpdates) {  // no word could hold it: refuse before any change to the words
    for (int64_t i = 0; i < B; ++i)
      if (rows[i] >= 0) seen[rows[i]] -= 1;
    out[0] = static_cast<double>(top);
    return 3;
  }
  const int nt = threads < 1 ? 1 : threads;
  std::vector<int> parts(static_cast<size_t>(nt), 0);
  for_tiles(T, nt, [&](int64_t t0, int64_t t1, int64_t p) {
    parts[p] = compact_rows(z, y, mask, rows, B, T, t0, t1, +1, words, missing, flips);
  });
  int flags = 0;
  for (int f : parts) flags |= f;
  if (validate && flags != 0) {  // refused: undo exactly, then describe
    for_tiles(T, nt, [&](int64_t t0, int64_t t1, int64_t) {
      compact_rows(z, y, mask, rows, B, T, t0, t1, -1, words, missing, flips);
    });
    for (int64_t i = 0; i < B; ++i)
      if (rows[i] >= 0) seen[rows[i]] -= 1;
    describe_rows(z, y, mask, rows, B, T, flags, out);
    return 1;
  }
  return 0;
}

template <typename Z>
int dispatch_compact(int ycode, const void* z, const void* y, const uint8_t* mask,
                     const int64_t* rows, int64_t B, int64_t T, int64_t R, uint64_t* words,
                     uint8_t* missing, int64_t* seen, const int64_t* base, uint64_t* flips,
                     int validate, int threads, double* out) {
#define STGMTL_RUN(TY)                                                                       \
  run_compact<Z, TY>(z, y, mask, rows, B, T, R, words, missing, seen, base, flips, validate, \
                     threads, out)
  switch (ycode) {
    case 0: return STGMTL_RUN(float);
    case 1: return STGMTL_RUN(double);
    case 2: return STGMTL_RUN(uint8_t);
    case 3: return STGMTL_RUN(int8_t);
    case 4: return STGMTL_RUN(int32_t);
    case 5: return STGMTL_RUN(int64_t);
    default: return -1;
  }
#undef STGMTL_RUN
}

}  // namespace

extern "C" {

// Version of this interface; native.py refuses a library that reports another.
int stgmtl_datamap_abi(void) { return 2; }

// zcode: 0 float32, 1 float64. ycode: 0 float32, 1 float64, 2 uint8 / bool, 3 int8, 4 int32,
// 5 int64. mask (uint8 / bool) and missing may be null (then both are). out receives the
// checked values (zmin, zmax, ymin, ymax, bad). R is the number of state rows. Returns 0 when
// the batch was added, 1 when the check refused it, 2 when a row is >= R (out[0] holds it;
// checked even without validate), -1 for an unsupported dtype code; nothing is written unless
// it returns 0.
int stgmtl_binary_update(int zcode, int ycode, const void* z, const void* y, const uint8_t* mask,
                         const int64_t* rows, int64_t B, int64_t T, int64_t R, double* s1,
                         double* s2,
                         int32_t* correct, int8_t* targets, int32_t* missing, int64_t* seen,
                         int validate, int threads, double* out) {
  if (zcode == 0)
    return dispatch_y<float>(ycode, z, y, mask, rows, B, T, R, s1, s2, correct, targets, missing,
                             seen, validate, threads, out);
  if (zcode == 1)
    return dispatch_y<double>(ycode, z, y, mask, rows, B, T, R, s1, s2, correct, targets, missing,
                              seen, validate, threads, out);
  return -1;
}

// The compact layout's update: words (R x T uint64), missing (R x T uint8, or null without a
// mask), seen (R int64), base (R int64 counts held elsewhere, e.g. an open per-epoch
// snapshot, that count towards the limit; or null), flips (scratch of B x ceil(T / 64) uint64
// bitmap words followed by B x ceil(T / 1024) bytes of per-tile flags).
// Returns 0 when the batch
// was added; 1 when the check refused it (out as above); 2 for a row >= R (out[0]); 3 when a
// sample would be observed more than 255 times (out[0] the count); -1 for an unsupported dtype
// code. Nothing is changed unless it returns 0.
int stgmtl_compact_update(int zcode, int ycode, const void* z, const void* y, const uint8_t* mask,
                          const int64_t* rows, int64_t B, int64_t T, int64_t R, uint64_t* words,
                          uint8_t* missing, int64_t* seen, const int64_t* base, uint64_t* flips,
                          int validate, int threads, double* out) {
  if (zcode == 0)
    return dispatch_compact<float>(ycode, z, y, mask, rows, B, T, R, words, missing, seen, base,
                                   flips, validate, threads, out);
  if (zcode == 1)
    return dispatch_compact<double>(ycode, z, y, mask, rows, B, T, R, words, missing, seen, base,
                                    flips, validate, threads, out);
  return -1;
}
}
