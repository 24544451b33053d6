"""`python -m flashsale`, the same as the `flashsale` console command."""

from flashsale.cli import main

if __name__ == "__main__":
    main()
