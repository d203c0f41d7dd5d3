// Process-wide allocator tuning for the engine's access pattern.
#pragma once

namespace quantlens {

// The engine allocates and frees activation buffers of megabytes on every layer and chunk
// (hidden states, attention scores, logits). Above glibc's mmap threshold each of them is a
// fresh mapping whose pages fault in and are zeroed again by the kernel: about a third of
// `eval` time on llama-8m. This keeps such buffers in the heap, where freed memory is
// reused. Call once, early in main(); harmless elsewhere (no-op on non-glibc systems).
void keep_large_buffers_in_heap();

}  // namespace quantlens
