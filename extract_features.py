from mser.cli.extract_features import main

if __name__ == "__main__":
    main()
