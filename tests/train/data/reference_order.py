#!/usr/bin/python3
"""Independent reference of loom's shuffled sample order (docs/data.md).

Usage: reference_order.py N SEED EPOCHS
Prints P_{SEED,e} for e = 0 .. EPOCHS-1, one permutation of range(N) per line.
"""
import sys

MASK = (1 << 64) - 1


class SplitMix64:
    def __init__(self, state):
        self.state = state & MASK

    def next(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        return z ^ (z >> 31)

    def below(self, bound):
        threshold = (1 << 64) % bound
        while True:
            r = self.next()
            if r >= threshold:
                return r % bound


def permutation(n, seed, epoch):
    state = SplitMix64(seed ^ SplitMix64(epoch).next()).next()
    rng = SplitMix64(state)
    order = list(range(n))
    for i in range(n - 1, 0, -1):
        j = rng.below(i + 1)
        order[i], order[j] = order[j], order[i]
    return order


def main():
    n, seed, epochs = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    for epoch in range(epochs):
        print(" ".join(str(w) for w in permutation(n, seed, epoch)))


if __name__ == "__main__":
    main()
