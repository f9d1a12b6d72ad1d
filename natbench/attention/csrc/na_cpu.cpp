// Fused 2-D neighborhood attention for CPU, forward only, computed in float32. Legacy NATTEN semantics: windows
// shift inward at the borders; a dilated map is dilation-1 NA on each residue class, all classes in one call.
//
// Queries go L at a time, one per vector lane, in one of two layouts of the keys and values:
//  - lanes over columns ("row"; keys [B, heads, H, D, W]): one task is one (image, head, query row), in blocks
//    of L consecutive columns. For a fixed (key row, channel) the keys of neighbouring queries are consecutive
//    floats, so interior blocks (every window unclamped) read them with one unaligned load per window column:
//    exactly kh * kw keys per query and no horizontal sums. Border blocks broadcast each key of the union of
//    their windows and mask the keys a lane does not see.
//  - lanes over images ("batch"; keys [B / L, heads, H, W, D, L]): one query position of L images shares
//    one window, so every load serves all lanes and no map is too small. fused.py picks the cheaper layout.
// Scores, softmax and the weighted sum stay per lane. The exp is Cephes' polynomial, vectorised.
#include <ATen/Parallel.h>
#include <torch/extension.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

namespace {

constexpr int L = 8;   // queries per block
constexpr int DB = 8;  // output channels accumulated in registers at once
typedef float vf __attribute__((vector_size(L * sizeof(float))));
typedef int vi __attribute__((vector_size(L * sizeof(int))));

inline vf splat(float x) { return vf{} + x; }
inline vf loadu(const float* p) {
  vf v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// exp(x) for x <= 0, as after subtracting the row max; 0 below -87 (and for -inf, the masked keys).
inline vf vexp(vf x) {
  const vf lo = splat(-87.0f);
  const vi under = x < lo;
  const vf xc = under ? lo : x;
  const vf magic = splat(12582912.0f);  // 1.5 * 2^23: adding and subtracting it rounds to an integer
  const vf n = (xc * 1.44269504088896341f + magic) - magic;
  vf r = xc - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  vf p = splat(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const vi bits = (__builtin_convertvector(n, vi) + 127) << 23;
  vf scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return under ? splat(0.0f) : p * scale;
}

inline int window_start(int i, int radius, int length, int kernel) {
  return std::min(std::max(i - radius, 0), length - kernel);
}

struct Args {
  const float* q;  // [B, H, W, heads, D], strides qs
  int64_t qs[5];
  const float* kt;  // contiguous, [B, heads, H, D, W] (lanes over columns) or [B / L, heads, H, W, D, L]
  const float* vt;
  float* out;  // [B, H, W, heads, D], strides os
  int64_t os[5];
  const float* rpb;  // [heads, 2kh-1, 2kw-1] contiguous, or null
  int64_t B, heads, H, W, D;
  int kh, kw;
  float scale;
};

struct Work {
  std::vector<vf> q, s, acc;  // the block's scaled queries [D], scores [kh * union width], sums [D]
  std::vector<vf> q2, s2, acc2;  // a second query position (lanes over images, two positions at once)
  std::vector<vf> mask;  // border blocks, per union column: 0 where a lane sees it, else -inf
  std::vector<std::array<int, L>> dx;  // and per lane its RPB column (key - query)
  explicit Work(const Args& a)
      : q(a.D),
        s(static_cast<size_t>(a.kh) * (L - 1 + a.kw)),
        acc(a.D),
        q2(a.D),
        s2(static_cast<size_t>(a.kh) * a.kw),
        acc2(a.D),
        mask(L - 1 + a.kw),
        dx(L - 1 + a.kw) {}
};

// Softmax over n score vectors, lane by lane; returns 1 / sum (the weights are left unnormalised).
inline vf softmax(vf* s, int n) {
  vf m = s[0];
  for (int t = 1; t < n; ++t) m = m > s[t] ? m : s[t];
  vf sum = splat(0.0f);
  for (int t = 0; t < n; ++t) {
    s[t] = vexp(s[t] - m);
    sum += s[t];
  }
  return 1.0f / sum;
}

struct Block {
  int64_t b, h, i;
  int r0;  // first key row
  int j0, n;  // first query column, queries in the block
  const float* K;  // this (image, head)'s transposed keys / values
  const float* V;
};

#if defined(__clang__)
#define NATBENCH_SHUFFLE(a, b, ...) __builtin_shufflevector(a, b, __VA_ARGS__)
#else  // GCC: __builtin_shufflevector only from GCC 12
#define NATBENCH_SHUFFLE(a, b, ...) __builtin_shuffle(a, b, vi{__VA_ARGS__})
#endif

// In-register 8x8 transpose: r[m][l] -> r[l][m].
inline void transpose8(vf* r) {
  static_assert(L == 8, "transpose8 needs 8 lanes");
  vf t[8], u[8];
  for (int m = 0; m < 8; m += 2) {
    t[m] = NATBENCH_SHUFFLE(r[m], r[m + 1], 0, 8, 1, 9, 4, 12, 5, 13);
    t[m + 1] = NATBENCH_SHUFFLE(r[m], r[m + 1], 2, 10, 3, 11, 6, 14, 7, 15);
  }
  for (int m = 0; m < 8; m += 4)
    for (int h = 0; h < 2; ++h) {
      u[m + 2 * h] = NATBENCH_SHUFFLE(t[m + h], t[m + h + 2], 0, 1, 8, 9, 4, 5, 12, 13);
      u[m + 2 * h + 1] = NATBENCH_SHUFFLE(t[m + h], t[m + h + 2], 2, 3, 10, 11, 6, 7, 14, 15);
    }
  for (int m = 0; m < 4; ++m) {
    r[m] = NATBENCH_SHUFFLE(u[m], u[m + 4], 0, 1, 2, 3, 8, 9, 10, 11);
    r[m + 4] = NATBENCH_SHUFFLE(u[m], u[m + 4], 4, 5, 6, 7, 12, 13, 14, 15);
  }
}

// Gathers n queries, `lane` floats apart (each one's D channels contiguous), into [D] vectors, times the scale.
void load_queries(const Args& a, const float* q, int64_t lane, int n, std::vector<vf>& into) {
  if (a.qs[4] == 1 && a.D % L == 0) {
    for (int64_t d0 = 0; d0 < a.D; d0 += L) {
      vf* r = &into[d0];
      for (int l = 0; l < L; ++l) r[l] = l < n ? loadu(q + l * lane + d0) * a.scale : splat(0.0f);
      transpose8(r);
    }
    return;
  }
  float* lanes = reinterpret_cast<float*>(into.data());
  std::fill(lanes, lanes + a.D * L, 0.0f);
  for (int l = 0; l < n; ++l, q += lane)
    for (int64_t d = 0; d < a.D; ++d) lanes[d * L + l] = q[d * a.qs[4]] * a.scale;
}

// Writes the n lanes of w.acc / sum to n outputs `lane` floats apart.
void store(const Args& a, float* o, int64_t lane, int n, std::vector<vf>& acc, vf inv) {
  for (int64_t d = 0; d < a.D; ++d) acc[d] *= inv;
  if (a.os[4] == 1 && a.D % L == 0) {
    for (int64_t d0 = 0; d0 < a.D; d0 += L) {
      vf* r = &acc[d0];
      transpose8(r);
      for (int l = 0; l < n; ++l) std::memcpy(o + l * lane + d0, &r[l], sizeof(vf));
    }
    return;
  }
  const float* lanes = reinterpret_cast<const float*>(acc.data());
  for (int l = 0; l < n; ++l, o += lane)
    for (int64_t d = 0; d < a.D; ++d) o[d * a.os[4]] = lanes[d * L + l];
}

inline const float* query_at(const Args& a, int64_t b, int64_t i, int64_t j, int64_t h) {
  return a.q + b * a.qs[0] + i * a.qs[1] + j * a.qs[2] + h * a.qs[3];
}

inline float* out_at(const Args& a, int64_t b, int64_t i, int64_t j, int64_t h) {
  return a.out + b * a.os[0] + i * a.os[1] + j * a.os[2] + h * a.os[3];
}

inline float bias(const Args& a, int64_t h, int dy, int dx) {  // dy, dx: key - query
  return a.rpb[(h * (2 * a.kh - 1) + dy + a.kh - 1) * (2 * a.kw - 1) + dx + a.kw - 1];
}

// Weighted sum over rows x cols scores (w.s, row-major) of the values `at(y, c)` points at, channels `W` apart.
template <bool Broadcast, typename At>
void weighted_sum(const Args& a, Work& w, int rows, int cols, int64_t W, At at) {
  const int64_t D = a.D;
  auto value = [&](const float* p) { return Broadcast ? splat(*p) : loadu(p); };
  int64_t d0 = 0;
  for (; d0 + DB <= D; d0 += DB) {
    vf acc[DB] = {};
    for (int y = 0; y < rows; ++y)
      for (int c = 0; c < cols; ++c) {
        const vf p = w.s[y * cols + c];
        const float* vp = at(y, c) + d0 * W;
#pragma GCC unroll 8
        for (int dd = 0; dd < DB; ++dd) acc[dd] += p * value(vp + dd * W);
      }
    for (int dd = 0; dd < DB; ++dd) w.acc[d0 + dd] = acc[dd];
  }
  for (; d0 < D; ++d0) {
    vf acc = {};
    for (int y = 0; y < rows; ++y)
      for (int c = 0; c < cols; ++c) acc += w.s[y * cols + c] * value(at(y, c) + d0 * W);
    w.acc[d0] = acc;
  }
}

// Every lane's window unclamped in columns: lane l sees columns j0 + l - rw .. + kw, so one unaligned load
// per (key row, channel, window column) serves all lanes. KW > 0 fixes the kernel width at compile time.
template <int KW>
void interior(const Args& a, const Block& blk, Work& w) {
  const int kw = KW > 0 ? KW : a.kw, rw = a.kw / 2;
  const int64_t W = a.W, D = a.D;
  for (int y = 0; y < a.kh; ++y) {
    const float* krow = blk.K + (blk.r0 + y) * D * W + blk.j0 - rw;
    vf* s = &w.s[y * kw];
    if constexpr (KW > 0) {
      vf acc[KW] = {};
      for (int64_t d = 0; d < D; ++d) {
        const vf qv = w.q[d];
        const float* kp = krow + d * W;
#pragma GCC unroll 16
        for (int c = 0; c < KW; ++c) acc[c] += qv * loadu(kp + c);
      }
      for (int c = 0; c < KW; ++c) s[c] = acc[c];
    } else {
      for (int c = 0; c < kw; ++c) {
        vf acc = {};
        for (int64_t d = 0; d < D; ++d) acc += w.q[d] * loadu(krow + d * W + c);
        s[c] = acc;
      }
    }
    if (a.rpb)
      for (int c = 0; c < kw; ++c) s[c] += bias(a, blk.h, blk.r0 + y - static_cast<int>(blk.i), c - rw);
  }
  const vf inv = softmax(w.s.data(), a.kh * kw);
  weighted_sum<false>(a, w, a.kh, kw, W, [&](int y, int c) { return blk.V + (blk.r0 + y) * D * W + blk.j0 - rw + c; });
  store(a, out_at(a, blk.b, blk.i, blk.j0, blk.h), a.os[2], blk.n, w.acc, inv);
}

// Scores of every lane against N consecutive key columns of one key row, broadcasting each key.
template <int N>
inline void broadcast_scores(const Work& w, const float* krow, int64_t W, int64_t D, vf* s) {
  vf acc[N] = {};
  for (int64_t d = 0; d < D; ++d) {
    const vf qv = w.q[d];
#pragma GCC unroll 8
    for (int u = 0; u < N; ++u) acc[u] += qv * splat(krow[d * W + u]);
  }
  for (int u = 0; u < N; ++u) s[u] = acc[u];
}

// One lane of a block from its own kh x kw keys only, in scalar code: as the reference, also for NaN / inf.
void exact_lane(const Args& a, const Block& blk, Work& w, int l, int first, vf& inv) {
  const int64_t W = a.W, D = a.D;
  const float* q = reinterpret_cast<const float*>(w.q.data());
  float* acc = reinterpret_cast<float*>(w.acc.data());
  std::vector<float> p(static_cast<size_t>(a.kh) * a.kw);
  float m = -INFINITY;
  for (int y = 0; y < a.kh; ++y)
    for (int x = 0; x < a.kw; ++x) {
      const float* k = blk.K + (blk.r0 + y) * D * W + first + x;
      float s = 0.0f;
      for (int64_t d = 0; d < D; ++d) s += q[d * L + l] * k[d * W];
      if (a.rpb) s += bias(a, blk.h, blk.r0 + y - static_cast<int>(blk.i), first + x - blk.j0 - l);
      p[y * a.kw + x] = s;
      m = (s > m || s != s) ? s : m;
    }
  float sum = 0.0f;
  for (float& e : p) sum += (e = std::exp(e - m));
  for (int64_t d = 0; d < D; ++d) {
    float o = 0.0f;
    for (int y = 0; y < a.kh; ++y)
      for (int x = 0; x < a.kw; ++x) o += p[y * a.kw + x] * blk.V[(blk.r0 + y) * D * W + d * W + first + x];
    acc[d * L + l] = o / sum;
  }
  float f[L];
  std::memcpy(f, &inv, sizeof f);
  f[l] = 1.0f;
  std::memcpy(&inv, f, sizeof f);
}

// Any block, borders included: scores against every key column in the union of the lanes' windows, the
// columns a lane does not see masked to -inf.
void border(const Args& a, const Block& blk, Work& w) {
  const int rw = a.kw / 2;
  const int64_t W = a.W, D = a.D;
  int first[L] = {};
  for (int l = 0; l < blk.n; ++l) first[l] = window_start(blk.j0 + l, rw, static_cast<int>(W), a.kw);
  const int c0 = first[0], U = first[blk.n - 1] + a.kw - c0;
  auto& mask = w.mask;
  auto& dx = w.dx;
  for (int u = 0; u < U; ++u) {
    float lanes[L] = {};
    for (int l = 0; l < blk.n; ++l) {
      const int col = c0 + u;
      const bool seen = col >= first[l] && col < first[l] + a.kw;
      lanes[l] = seen ? 0.0f : -INFINITY;
      dx[u][l] = seen ? col - blk.j0 - l : 0;
    }
    for (int l = blk.n; l < L; ++l) dx[u][l] = 0;
    std::memcpy(&mask[u], lanes, sizeof lanes);
  }
  for (int y = 0; y < a.kh; ++y) {
    const float* krow = blk.K + (blk.r0 + y) * D * W + c0;
    vf* s = &w.s[y * U];
    // Chunks of 8 (or 4) independent sums, the last one overlapping its neighbour: no latency-bound tail.
    int u = 0;
    if (U >= 8) {
      for (; u + 8 <= U; u += 8) broadcast_scores<8>(w, krow + u, W, D, s + u);
      if (u < U) broadcast_scores<8>(w, krow + U - 8, W, D, s + U - 8);
    } else if (U >= 4) {
      broadcast_scores<4>(w, krow, W, D, s);
      broadcast_scores<4>(w, krow + U - 4, W, D, s + U - 4);
    } else {
      for (; u < U; ++u) broadcast_scores<1>(w, krow + u, W, D, s + u);
    }
    const int dy = blk.r0 + y - static_cast<int>(blk.i);
    for (u = 0; u < U; ++u) {
      s[u] += mask[u];
      if (a.rpb) {
        float lanes[L] = {};
        for (int l = 0; l < blk.n; ++l) lanes[l] = bias(a, blk.h, dy, dx[u][l]);
        vf b;
        std::memcpy(&b, lanes, sizeof b);
        s[u] += b;
      }
    }
  }
  vf inv = softmax(w.s.data(), a.kh * U);
  weighted_sum<true>(a, w, a.kh, U, W, [&](int y, int u) { return blk.V + (blk.r0 + y) * D * W + c0 + u; });
  // A NaN or inf key or value in the union reaches lanes that do not see it (0 * inf): redo those lanes alone.
  vf probe = splat(0.0f);
  for (int64_t d = 0; d < D; ++d) probe += w.acc[d] * inv * 0.0f;
  float lanes[L];
  std::memcpy(lanes, &probe, sizeof lanes);
  for (int l = 0; l < blk.n; ++l)
    if (lanes[l] != 0.0f) exact_lane(a, blk, w, l, first[l], inv);
  store(a, out_at(a, blk.b, blk.i, blk.j0, blk.h), a.os[2], blk.n, w.acc, inv);
}

template <int KW>
void row(const Args& a, int64_t task, Work& w) {
  Block blk;
  blk.i = task % a.H;
  blk.h = (task / a.H) % a.heads;
  blk.b = task / (a.H * a.heads);
  blk.r0 = window_start(static_cast<int>(blk.i), a.kh / 2, static_cast<int>(a.H), a.kh);
  const int64_t plane = a.H * a.D * a.W;
  blk.K = a.kt + (blk.b * a.heads + blk.h) * plane;
  blk.V = a.vt + (blk.b * a.heads + blk.h) * plane;
  const int W = static_cast<int>(a.W), rw = a.kw / 2;
  const bool has_interior = W - 2 * rw >= L;
  for (int j = 0; j < W;) {
    blk.j0 = j;
    if (j >= rw && j + L <= W - rw) {
      blk.n = L;
      load_queries(a, query_at(a, blk.b, blk.i, j, blk.h), a.qs[2], blk.n, w.q);
      interior<KW>(a, blk, w);
    } else {
      // The left border alone (its windows coincide), else up to L queries.
      blk.n = (j < rw && has_interior) ? std::min(rw - j, L) : std::min(L, W - j);
      load_queries(a, query_at(a, blk.b, blk.i, j, blk.h), a.qs[2], blk.n, w.q);
      border(a, blk, w);
    }
    j += blk.n;
  }
}

// Lanes over images, two neighbouring query positions j, j + 1 whose windows are one column apart: each key
// and value load serves both (the single position is bound by cache bandwidth, not by the FMAs).
template <int KW>
void batch_pair(const Args& a, const float* K, const float* V, int64_t g, int64_t h, int64_t i, int r0, int j,
                int c0, int n, Work& w) {
  const int64_t pos = a.D * L, D = a.D;
  load_queries(a, query_at(a, g * L, i, j, h), a.qs[0], n, w.q);
  load_queries(a, query_at(a, g * L, i, j + 1, h), a.qs[0], n, w.q2);
  for (int y = 0; y < a.kh; ++y) {
    const float* krow = K + ((r0 + y) * a.W + c0) * pos;
    vf acc0[KW] = {}, acc1[KW] = {};
    for (int64_t d = 0; d < D; ++d) {
      const vf q0 = w.q[d], q1 = w.q2[d];
      acc0[0] += q0 * loadu(krow + d * L);
#pragma GCC unroll 16
      for (int c = 1; c < KW; ++c) {
        const vf kv = loadu(krow + c * pos + d * L);
        acc0[c] += q0 * kv;
        acc1[c - 1] += q1 * kv;
      }
      acc1[KW - 1] += q1 * loadu(krow + KW * pos + d * L);
    }
    for (int c = 0; c < KW; ++c) {
      const float b = a.rpb ? bias(a, h, r0 + y - static_cast<int>(i), c0 + c - j) : 0.0f;
      w.s[y * KW + c] = acc0[c] + b;
      w.s2[y * KW + c] = acc1[c] + b;
    }
  }
  const vf inv0 = softmax(w.s.data(), a.kh * KW), inv1 = softmax(w.s2.data(), a.kh * KW);
  for (int64_t d0 = 0; d0 < D; d0 += DB) {
    vf acc0[DB] = {}, acc1[DB] = {};
    for (int y = 0; y < a.kh; ++y) {
      const float* vrow = V + ((r0 + y) * a.W + c0) * pos + d0 * L;
      const vf* p0 = &w.s[y * KW];
      const vf* p1 = &w.s2[y * KW];
#pragma GCC unroll 8
      for (int dd = 0; dd < DB; ++dd) acc0[dd] += p0[0] * loadu(vrow + dd * L);
      for (int c = 1; c < KW; ++c)
#pragma GCC unroll 8
        for (int dd = 0; dd < DB; ++dd) {
          const vf v = loadu(vrow + c * pos + dd * L);
          acc0[dd] += p0[c] * v;
          acc1[dd] += p1[c - 1] * v;
        }
#pragma GCC unroll 8
      for (int dd = 0; dd < DB; ++dd) acc1[dd] += p1[KW - 1] * loadu(vrow + KW * pos + dd * L);
    }
    for (int dd = 0; dd < DB; ++dd) w.acc[d0 + dd] = acc0[dd], w.acc2[d0 + dd] = acc1[dd];
  }
  store(a, out_at(a, g * L, i, j, h), a.os[0], n, w.acc, inv0);
  store(a, out_at(a, g * L, i, j + 1, h), a.os[0], n, w.acc2, inv1);
}

// Lanes over images: task = (image group, head, query row); every query position of the row in turn.
template <int KW>
void batch_row(const Args& a, int64_t task, Work& w) {
  const int64_t i = task % a.H, h = (task / a.H) % a.heads, g = task / (a.H * a.heads);
  const int n = static_cast<int>(std::min<int64_t>(L, a.B - g * L));
  const int kw = KW > 0 ? KW : a.kw, W = static_cast<int>(a.W), D = static_cast<int>(a.D);
  const int r0 = window_start(static_cast<int>(i), a.kh / 2, static_cast<int>(a.H), a.kh);
  const int64_t pos = static_cast<int64_t>(D) * L;  // floats per key position
  const float* K = a.kt + (g * a.heads + h) * a.H * a.W * pos;
  const float* V = a.vt + (g * a.heads + h) * a.H * a.W * pos;
  for (int j = 0; j < W; ++j) {
    const int c0 = window_start(j, a.kw / 2, W, a.kw);
    if constexpr (KW > 0) {
      if (D % DB == 0 && j + 1 < W && window_start(j + 1, a.kw / 2, W, a.kw) == c0 + 1) {
        batch_pair<KW>(a, K, V, g, h, i, r0, j, c0, n, w);
        ++j;
        continue;
      }
    }
    load_queries(a, query_at(a, g * L, i, j, h), a.qs[0], n, w.q);
    for (int y = 0; y < a.kh; ++y) {
      const float* krow = K + ((r0 + y) * a.W + c0) * pos;
      vf* s = &w.s[y * kw];
      if constexpr (KW > 0) {
        vf acc[KW] = {};
        for (int d = 0; d < D; ++d) {
          const vf qv = w.q[d];
#pragma GCC unroll 16
          for (int c = 0; c < KW; ++c) acc[c] += qv * loadu(krow + c * pos + d * L);
        }
        for (int c = 0; c < KW; ++c) s[c] = acc[c];
      } else {
        for (int c = 0; c < kw; ++c) {
          vf acc = {};
          for (int d = 0; d < D; ++d) acc += w.q[d] * loadu(krow + c * pos + d * L);
          s[c] = acc;
        }
      }
      if (a.rpb)
        for (int c = 0; c < kw; ++c) s[c] += bias(a, h, r0 + y - static_cast<int>(i), c0 + c - j);
    }
    const vf inv = softmax(w.s.data(), a.kh * kw);
    weighted_sum<false>(a, w, a.kh, kw, L, [&](int y, int c) { return V + ((r0 + y) * a.W + c0 + c) * pos; });
    store(a, out_at(a, g * L, i, j, h), a.os[0], n, w.acc, inv);
  }
}

// One residue class of a dilated map (the whole map at dilation 1): its own undilated NA problem. Queries and
// outputs are strided views of the caller's tensors; keys and values are packed per class into `kt` / `vt`.
struct ClassProblem {
  Args a;
  int64_t cy, cx;  // first map row / column of the class
  int64_t first_task;
  int64_t packed_at;  // offset of its keys / values in the packed buffers
};

// Copies the keys (or values) of one task's row, [B, H, W, heads, D] with strides `s`, into the packed layout.
template <typename T>
void pack_row(const ClassProblem& p, const T* src, const int64_t* s, float* dst, int64_t dh, int64_t dw,
              bool batch_lanes, int64_t task) {
  const Args& a = p.a;
  const int64_t i = task % a.H, h = (task / a.H) % a.heads, g = task / (a.H * a.heads);
  const T* row = src + (p.cy + i * dh) * s[1] + h * s[3];
  auto at = [&](int64_t b, int64_t c) { return row + b * s[0] + (p.cx + c * dw) * s[2]; };
  // float32 with contiguous channels: 8 x 8 blocks through an in-register transpose.
  const bool blocks = std::is_same<T, float>::value && s[4] == 1 && a.D % L == 0;
  if (!batch_lanes) {  // [B, heads, H, D, W]
    float* out = dst + ((g * a.heads + h) * a.H + i) * a.D * a.W;
    int64_t c = 0;
    if (blocks)
      for (; c + L <= a.W; c += L)
        for (int64_t d0 = 0; d0 < a.D; d0 += L) {
          vf r[L];
          for (int m = 0; m < L; ++m) std::memcpy(&r[m], at(g, c + m) + d0, sizeof(vf));
          transpose8(r);
          for (int m = 0; m < L; ++m) std::memcpy(out + (d0 + m) * a.W + c, &r[m], sizeof(vf));
        }
    for (; c < a.W; ++c) {
      const T* x = at(g, c);
      for (int64_t d = 0; d < a.D; ++d) out[d * a.W + c] = static_cast<float>(x[d * s[4]]);
    }
    return;
  }
  float* out = dst + ((g * a.heads + h) * a.H + i) * a.W * a.D * L;  // [B / L, heads, H, W, D, L]
  const int n = static_cast<int>(std::min<int64_t>(L, a.B - g * L));
  for (int64_t c = 0; c < a.W; ++c, out += a.D * L) {
    if (blocks && n == L) {
      for (int64_t d0 = 0; d0 < a.D; d0 += L) {
        vf r[L];
        for (int l = 0; l < L; ++l) std::memcpy(&r[l], at(g * L + l, c) + d0, sizeof(vf));
        transpose8(r);
        std::memcpy(out + d0 * L, r, sizeof r);
      }
      continue;
    }
    for (int l = 0; l < L; ++l) {
      const T* x = l < n ? at(g * L + l, c) : nullptr;
      for (int64_t d = 0; d < a.D; ++d) out[d * L + l] = x ? static_cast<float>(x[d * s[4]]) : 0.0f;
    }
  }
}

// Runs every task of every class in one parallel loop: make() gives each chunk its fn(problem, local task).
template <typename Make>
void for_each_task(const std::vector<ClassProblem>& classes, int64_t tasks, Make make) {
  at::parallel_for(0, tasks, 1, [&](int64_t begin, int64_t end) {
    auto fn = make();
    auto it = classes.begin();
    for (int64_t task = begin; task < end; ++task) {
      while (it + 1 != classes.end() && task >= (it + 1)->first_task) ++it;
      fn(*it, task - it->first_task);
    }
  });
}

// q, k, v, out: [B, H, W, heads, D], any strides; q and out float32, k and v float32, bfloat16 or float16.
void na2d_forward(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, torch::Tensor& out,
                  const c10::optional<torch::Tensor>& rpb, int64_t kh, int64_t kw, int64_t dh, int64_t dw,
                  double scale, bool batch_lanes) {
  for (const torch::Tensor* t : {&q, &k, &v, static_cast<const torch::Tensor*>(&out)})
    TORCH_CHECK(t->dim() == 5 && t->sizes() == q.sizes() && t->device().is_cpu(),
                "q, k, v and out must be [B, H, W, heads, D] on CPU, of one shape");
  TORCH_CHECK(q.scalar_type() == torch::kFloat32 && out.scalar_type() == torch::kFloat32, "q and out: float32");
  TORCH_CHECK(k.scalar_type() == v.scalar_type(), "k and v must have one dtype");
  const int64_t B = q.size(0), H = q.size(1), W = q.size(2), heads = q.size(3), D = q.size(4);
  TORCH_CHECK(kh % 2 == 1 && kw % 2 == 1 && dh >= 1 && dw >= 1 && kh * dh <= H && kw * dw <= W,
              "kernel must be odd and kernel * dilation fit the map");
  const float* bias_table = nullptr;
  if (rpb.has_value()) {
    const auto& r = *rpb;
    TORCH_CHECK(r.scalar_type() == torch::kFloat32 && r.is_contiguous() &&
                    r.sizes() == std::vector<int64_t>({heads, 2 * kh - 1, 2 * kw - 1}),
                "rpb must be contiguous float32 [heads, 2kh-1, 2kw-1]");
    bias_table = r.data_ptr<float>();
  }
  const int64_t groups = batch_lanes ? (B + L - 1) / L : B;
  std::vector<ClassProblem> classes;
  int64_t tasks = 0, floats = 0;
  for (int64_t cy = 0; cy < dh; ++cy)
    for (int64_t cx = 0; cx < dw; ++cx) {
      ClassProblem p{};
      Args& a = p.a;
      a.B = B, a.heads = heads, a.D = D;
      a.H = (H - cy + dh - 1) / dh, a.W = (W - cx + dw - 1) / dw;
      a.kh = static_cast<int>(kh), a.kw = static_cast<int>(kw);
      a.scale = static_cast<float>(scale);
      a.rpb = bias_table;
      a.q = q.data_ptr<float>() + cy * q.stride(1) + cx * q.stride(2);
      a.out = out.data_ptr<float>() + cy * out.stride(1) + cx * out.stride(2);
      for (int d = 0; d < 5; ++d) {
        const int64_t step = d == 1 ? dh : d == 2 ? dw : 1;
        a.qs[d] = q.stride(d) * step;
        a.os[d] = out.stride(d) * step;
      }
      p.cy = cy, p.cx = cx, p.first_task = tasks, p.packed_at = floats;
      tasks += groups * heads * a.H;
      floats += groups * heads * a.H * a.W * D * (batch_lanes ? L : 1);
      classes.push_back(p);
    }
  const torch::Tensor kt = torch::empty({floats}, q.options()), vt = torch::empty({floats}, q.options());
  for (ClassProblem& p : classes) {
    p.a.kt = kt.data_ptr<float>() + p.packed_at;
    p.a.vt = vt.data_ptr<float>() + p.packed_at;
  }
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, k.scalar_type(), "na2d_pack", [&] {
    const scalar_t *ks = k.data_ptr<scalar_t>(), *vs = v.data_ptr<scalar_t>();
    const std::vector<int64_t> kstr(k.strides().begin(), k.strides().end());
    const std::vector<int64_t> vstr(v.strides().begin(), v.strides().end());
    for_each_task(classes, tasks, [&] {
      return [&](const ClassProblem& p, int64_t task) {
        pack_row(p, ks, kstr.data(), const_cast<float*>(p.a.kt), dh, dw, batch_lanes, task);
        pack_row(p, vs, vstr.data(), const_cast<float*>(p.a.vt), dh, dw, batch_lanes, task);
      };
    });
  });
  auto run = [&](auto kernel) {
    for_each_task(classes, tasks, [&] {
      // Work is sized by kh, kw and D, which every class shares.
      return [&, w = Work(classes[0].a)](const ClassProblem& p, int64_t task) mutable { kernel(p.a, task, w); };
    });
  };
#define NATBENCH_DISPATCH(K) \
  case K:                    \
    batch_lanes ? run(batch_row<K>) : run(row<K>); \
    break;
  switch (kw) {
    NATBENCH_DISPATCH(3)
    NATBENCH_DISPATCH(5)
    NATBENCH_DISPATCH(7)
    NATBENCH_DISPATCH(9)
    NATBENCH_DISPATCH(11)
    NATBENCH_DISPATCH(13)
    default:
      batch_lanes ? run(batch_row<0>) : run(row<0>);
  }
#undef NATBENCH_DISPATCH
}

}  // namespace

std::string build_info() {
#if defined(__AVX512F__)
  const char* isa = "avx512f";
#elif defined(__AVX2__)
  const char* isa = "avx2";
#else
  const char* isa = "no avx2";
#endif
  return std::string("gcc ") + __VERSION__ + ", " + isa + ", " + std::to_string(L) + " lanes of float32";
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("build_info", &build_info, "compiler, instruction set and vector width the kernel was built with");
  m.def("na2d_forward", &na2d_forward, "fused neighborhood attention forward, computed in float32");
  m.def("lanes", [] { return L; });
}
