// Every kernel takes (long long start, long long n) first: a launch covers items
// [start, start + grid * block) of n, so that _cuda.launch can split a long pass into
// short launches (a display GPU kills a kernel that runs for seconds) without changing
// which item a thread computes, hence without changing a bit of the result.
#pragma once

__device__ __forceinline__ long long item_index(long long start) {
    return start + (long long)blockIdx.x * blockDim.x + threadIdx.x;
}
