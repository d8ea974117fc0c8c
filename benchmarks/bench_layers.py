"""Layer benchmark suite of issue 3; see ``dynconv_np/bench.py`` for what it measures."""
from dynconv_np.bench import main

if __name__ == "__main__":
    main()
