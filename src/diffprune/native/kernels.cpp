// Stage 1's elementwise kernels in plain C++, called through ctypes (diffprune/native/__init__.py).
//
// The same math as the torch functions in diff.py and compact_adamw.py, one loop per call, each
// over the entries [start, end) so that the caller can split a large tensor between threads.
// Integers are unsigned 32-bit (the torch versions emulate that in int32: the same bits); no
// floating-point contraction (built with -ffp-contract=off), so every float operation rounds as
// torch's separate operations do. exp is the one function of its own: Cephes' single-precision
// polynomial, within 1 ulp of the exact value (checked on a sample of its range), where torch's
// exp differs by its own ulp or so.
#include <stdint.h>
#include <string.h>


static inline uint32_t hash32(uint32_t x) {  // Wellons' lowbias32, as diff.py's _hash32
    x ^= x >> 16;
    x *= 0x7FEB352Du;
    x ^= x >> 15;
    x *= 0x846CA68Bu;
    x ^= x >> 16;
    return x;
}

static inline float bits_to_float(uint32_t b) { float f; memcpy(&f, &b, 4); return f; }
static inline uint32_t float_to_bits(float f) { uint32_t b; memcpy(&b, &f, 4); return b; }

// exp(x), branch-free so that loops vectorize. Inputs above 88 give exp(88) (finite; every use
// here divides by 1 + c * exp(x), which is then ~0 either way), below -87 give exp(-87); NaN stays
// NaN (both comparisons are false for it).
static inline float exp_f(float x) {
    x = x > 88.0f ? 88.0f : x;
    x = x < -87.0f ? -87.0f : x;
    float k = __builtin_floorf(x * 1.44269504088896341f + 0.5f);
    float r = x - k * 0.693359375f;
    r = r - k * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    uint32_t scale = (uint32_t)((int32_t)k + 127) << 23;
    return p * bits_to_float(scale);
}

// u of entry `index` for seeds (s0, s1): diff.py's entry_uniform, the same bits.
static inline float uniform(uint32_t index, uint32_t s0, uint32_t s1, float lo, float hi) {
    uint32_t h = hash32(hash32(index ^ s0) ^ s1);
    float u = ((float)((h >> 8) & 0xFFFFFFu) + 0.5f) * (1.0f / 16777216.0f);
    u = u < lo ? lo : u;
    return u > hi ? hi : u;
}

// z at temperature 1: sigmoid(logit(u) + a) = 1 / (1 + (1/u - 1) exp(-a)), stretched, clamped.
static inline float gate(float neg_exp, float u, float left, float span) {
    float s = 1.0f / (1.0f + (1.0f / u - 1.0f) * neg_exp);
    float z = s * span + left;
    z = z < 0.0f ? 0.0f : z;
    return z > 1.0f ? 1.0f : z;
}

// Entry i's gate z, and exp(-log_alpha_i) in neg_exp for the caller's P(z > 0).
template <bool INDEX>
static inline float entry_gate(int64_t i, const int64_t* index, const float* log_alpha,
                               uint32_t s0, uint32_t s1, float lo, float hi, float left,
                               float span, float& neg_exp) {
    uint32_t position = INDEX ? (uint32_t)index[i] : (uint32_t)i;
    neg_exp = exp_f(-log_alpha[i]);
    return gate(neg_exp, uniform(position, s0, s1, lo, hi), left, span);
}

// Forward of GatedDiff: weight = theta + z * w [* group]; returns sum of P(z > 0).
// index: the entries' flat positions (NULL: start .. end-1). Each branch is a template argument,
// so that every loop compiles without one and vectorizes.
template <bool INDEX, bool GROUP>
static double gate_forward_loop(int64_t start, int64_t end, const float* theta, const float* w,
                                const float* log_alpha, const int64_t* index, uint32_t s0,
                                uint32_t s1, float group, float left, float span,
                                float exp_shift, float lo, float hi, float* weight) {
    float l0 = 0.0f;
#pragma omp simd reduction(+ : l0)
    for (int64_t i = start; i < end; i++) {
        float neg_exp;
        float z = entry_gate<INDEX>(i, index, log_alpha, s0, s1, lo, hi, left, span, neg_exp);
        float delta = z * w[i];
        if (GROUP) delta = delta * group;
        weight[i] = theta[i] + delta;
        l0 += 1.0f / (1.0f + neg_exp * exp_shift);
    }
    return l0;
}

extern "C" double gate_forward(int64_t start, int64_t end, const float* theta, const float* w,
                               const float* log_alpha, const int64_t* index, uint32_t s0,
                               uint32_t s1, int has_group, float group, float left, float span,
                               float exp_shift, float lo, float hi, float* weight) {
    auto loop = index ? (has_group ? gate_forward_loop<true, true> : gate_forward_loop<true, false>)
                      : (has_group ? gate_forward_loop<false, true>
                                   : gate_forward_loop<false, false>);
    return loop(start, end, theta, w, log_alpha, index, s0, s1, group, left, span, exp_shift, lo,
                hi, weight);
}

// Backward of GatedDiff: grad_w = g z [group], grad_alpha = g w dz/da [group] (+ the penalty's
// grad_l0 P(1 - P)); returns sum g z w (the group gate's gradient).
template <bool INDEX, bool GROUP, bool L0>
static double gate_backward_loop(int64_t start, int64_t end, const float* grad, const float* w,
                                 const float* log_alpha, const int64_t* index, uint32_t s0,
                                 uint32_t s1, float group, float grad_l0, float left,
                                 float right, float span, float slope_denominator,
                                 float exp_shift, float lo, float hi, float* grad_w,
                                 float* grad_alpha) {
    float group_grad = 0.0f;
#pragma omp simd reduction(+ : group_grad)
    for (int64_t i = start; i < end; i++) {
        float neg_exp;
        float z = entry_gate<INDEX>(i, index, log_alpha, s0, s1, lo, hi, left, span, neg_exp);
        float g = grad[i];
        float gz = g * z;
        float slope = (z - left) * (right - z) / slope_denominator;
        float dz = z > 0.0f ? slope : 0.0f;  // zero where z is clamped (two selects: GCC 12
        dz = z < 1.0f ? dz : 0.0f;            // vectorizes these, not one with a &&)
        float ga = g * w[i] * dz;
        if (GROUP) {
            group_grad += gz * w[i];
            ga = ga * group;
            gz = gz * group;
        }
        if (L0) {
            float p = 1.0f / (1.0f + neg_exp * exp_shift);
            ga = ga + grad_l0 * p * (1.0f - p);
        }
        grad_w[i] = gz;
        grad_alpha[i] = ga;
    }
    return group_grad;
}

template <bool INDEX>
static double gate_backward_dispatch(int has_group, int has_l0, int64_t start, int64_t end,
                                     const float* grad, const float* w, const float* log_alpha,
                                     const int64_t* index, uint32_t s0, uint32_t s1, float group,
                                     float grad_l0, float left, float right, float span,
                                     float slope_denominator, float exp_shift, float lo, float hi,
                                     float* grad_w, float* grad_alpha) {
    auto loop = has_group ? (has_l0 ? gate_backward_loop<INDEX, true, true>
                                    : gate_backward_loop<INDEX, true, false>)
                          : (has_l0 ? gate_backward_loop<INDEX, false, true>
                                    : gate_backward_loop<INDEX, false, false>);
    return loop(start, end, grad, w, log_alpha, index, s0, s1, group, grad_l0, left, right, span,
                slope_denominator, exp_shift, lo, hi, grad_w, grad_alpha);
}

extern "C" double gate_backward(int64_t start, int64_t end, const float* grad, const float* w,
                                const float* log_alpha, const int64_t* index, uint32_t s0,
                                uint32_t s1, int has_group, float group, int has_l0,
                                float grad_l0, float left, float right, float span,
                                float slope_denominator, float exp_shift, float lo, float hi,
                                float* grad_w, float* grad_alpha) {
    auto dispatch = index ? gate_backward_dispatch<true> : gate_backward_dispatch<false>;
    return dispatch(has_group, has_l0, start, end, grad, w, log_alpha, index, s0, s1, group,
                    grad_l0, left, right, span, slope_denominator, exp_shift, lo, hi, grad_w,
                    grad_alpha);
}

// sum of P(z > 0) = sigmoid(log_alpha - shift), and its gradient.
extern "C" double expected_l0(int64_t start, int64_t end, const float* log_alpha,
                              float exp_shift) {
    float l0 = 0.0f;
#pragma omp simd reduction(+ : l0)
    for (int64_t i = start; i < end; i++) l0 += 1.0f / (1.0f + exp_f(-log_alpha[i]) * exp_shift);
    return l0;
}

extern "C" void expected_l0_backward(int64_t start, int64_t end, float grad_l0,
                                     const float* log_alpha, float exp_shift, float* out) {
#pragma omp simd
    for (int64_t i = start; i < end; i++) {
        float p = 1.0f / (1.0f + exp_f(-log_alpha[i]) * exp_shift);
        out[i] = grad_l0 * p * (1.0f - p);
    }
}

// AdamW's hyperparameters as compact_adamw passes them: 1 - lr wd, b1, 1 - b1, b2, 1 - b2,
// lr / (1 - b1^t), sqrt(1 - b2^t), eps.
struct Hyper {
    float decay, b1, one_minus_b1, b2, one_minus_b2, step_size, bc2_sqrt, eps;
};

static inline Hyper load_hyper(const float* h) {
    return {h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]};
}

// One entry's AdamW step from its old moments: the new (unrounded) m and v, and the parameter.
static inline float adamw_entry(const Hyper& k, float p, float g, float m_old, float v_old,
                                float& m, float& v) {
    m = m_old * k.b1 + g * k.one_minus_b1;
    v = v_old * k.b2 + g * g * k.one_minus_b2;
    return p * k.decay - k.step_size * m / (__builtin_sqrtf(v) / k.bc2_sqrt + k.eps);
}

// CompactAdamW's step with both moments in one word (m's bfloat16 bits high, v's low): the same
// operations, in the same order, as compact_adamw._packed_step_math (the same bits).
extern "C" void packed_adamw(int64_t start, int64_t end, float* p, const float* g, uint32_t* mv,
                             const float* hyper, uint32_t seed) {
    const Hyper k = load_hyper(hyper);
#pragma omp simd
    for (int64_t i = start; i < end; i++) {
        uint32_t word = mv[i];
        float m, v;
        p[i] = adamw_entry(k, p[i], g[i], bits_to_float(word & 0xFFFF0000u),
                           bits_to_float(word << 16), m, v);
        uint32_t m_bits = float_to_bits(m);
        uint32_t m_high = (m_bits + 0x7FFFu + ((m_bits >> 16) & 1u)) & 0xFFFF0000u;
        uint32_t h = (uint32_t)i * 0x2545F491u + seed;  // compact_adamw._round_bits
        h ^= h >> 15;
        h *= 0x2C1B3C6Du;
        h ^= h >> 12;
        h *= 0x297A2D39u;
        uint32_t v_high = (float_to_bits(v) + ((h >> 16) & 0xFFFFu)) & 0xFFFF0000u;
        mv[i] = m_high | (v_high >> 16);
    }
}

// torch's AdamW step with float32 moments, as compact_adamw._step_math.
extern "C" void adamw(int64_t start, int64_t end, float* p, const float* g, float* m, float* v,
                      const float* hyper) {
    const Hyper k = load_hyper(hyper);
#pragma omp simd
    for (int64_t i = start; i < end; i++) {
        float mi, vi;
        p[i] = adamw_entry(k, p[i], g[i], m[i], v[i], mi, vi);
        m[i] = mi;
        v[i] = vi;
    }
}
