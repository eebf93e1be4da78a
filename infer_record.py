from mser.cli.infer_record import main

if __name__ == "__main__":
    main()
