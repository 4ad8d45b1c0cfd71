# Seed 003, "管道": a child sends one message over a Pipe. The import is
# the one change.
from shmring import Process, Pipe  # 引入进程模块和管道模块


def f(conn):  # 定义一个函数
    conn.send("Hello The_Third_Wave")  # 发送一条信息
    conn.close()  # 关闭这个进程


if __name__ == '__main__':  # 如果名字等于当前名称
    parent_conn, child_conn = Pipe()  # 接收两个参数
    p = Process(target=f, args=(child_conn,))  # 创建一个进程
    p.start()  # 启动进程
    print(parent_conn.recv())  # 接收一个信息
    p.join()  # 等待进程结束
