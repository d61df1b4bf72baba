from bench.runners.cli import main

main()
