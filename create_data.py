from mser.cli.create_data import main

if __name__ == "__main__":
    main()
